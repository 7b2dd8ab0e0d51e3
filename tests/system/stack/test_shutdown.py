"""SIGTERM stops a daemon in two phases (stop taking work, drain) and it exits 0; a drain that
does not finish is cut off by the deadline."""
import json
import os
import signal
import subprocess
import tempfile
import uuid

import pytest

from kchat_testkit.api import s3_args
from kchat_testkit.daemon import Daemon
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.stack import BUILD, DAEMONS


def instance_args(name):
    """A second instance beside the stack's own: its own ports, group and slot."""
    tag = uuid.uuid4().hex[:6]
    if name in ("api", "registry"):
        port = free_port()
        return [f"--listen-port={port}"], f"http://127.0.0.1:{port}"
    port = free_port()
    args = [f"--admin-port={port}"]
    if name in ("processor", "projector", "archiver"):
        args.append(f"--group-id=shutdown-test-{tag}")
    if name == "archiver":
        # The stack's MinIO, a folder of its own, and a topic that holds next to nothing
        # (the dead letters), so that it drains at once and writes no object of the live
        # topics.
        args += [*s3_args(), f"--archive-prefix=shutdown-test-{tag}/",
                 "--archive-topics=chat.commands.dlq",
                 f"--spool-dir={tempfile.mkdtemp(prefix='kchat-archiver-shutdown-')}"]
    if name == "processor":
        # An instance id of its own: the default one is the stack's processor's, and its
        # transactional id would fence that processor.
        args.append(f"--instance-id=shutdown-test-{tag}")
    if name == "gateway":
        # A slot no stack gateway owns (they hold 0..2), so its drain deregisters nobody
        # else's users; its WebSocket port inside the stack's port range (base + 89).
        args += ["--slot=7", f"--listen-port={int(os.environ['KCHAT_PORT_BASE']) + 89}"]
    return args, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_sigterm_drains_and_exits_zero(name, tmp_path):
    args, base = instance_args(name)
    proc = Daemon(DAEMONS[name]["binary"], [*args, "--shutdown-timeout-ms=8000"],
                  tmp_path / "log")
    try:
        wait_until(lambda: http_get(base + "/health", timeout=2)[0] == 200, f"{name} healthy")
        proc.send_signal(signal.SIGTERM)
        # The deadline is 8 s; the wait below only bounds a hung test.
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    entries = proc.entries()
    msgs = [e["msg"] for e in entries]
    assert rc == 0, msgs[-10:]
    i_stop = msgs.index("stopping: no new work, draining")
    i_drained = msgs.index("drained")
    i_stopped = msgs.index("stopped")
    assert i_stop < i_drained < i_stopped
    stopping = entries[i_stop]
    assert stopping["reason"] == "SIGTERM"
    assert stopping["deadline_ms"] == 8000
    assert all(e["svc"] == name for e in entries)


def test_a_stuck_drain_is_cut_off_by_the_deadline(tmp_path):
    proc = subprocess.run([str(BUILD / "tests" / "tools" / "kc-stuck-drain"), "--deadline-ms=300"],
                          capture_output=True, text=True, timeout=30)
    entries = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1
    assert entries[-1]["msg"] == "drain did not finish within the deadline; exiting"
    assert entries[-1]["deadline_ms"] == 300
