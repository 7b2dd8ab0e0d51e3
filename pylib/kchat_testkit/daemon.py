"""One way to run a daemon binary beside the stack: its own arguments and ports, its output
(JSON log lines) in a file, /health awaited, stopped by a signal."""
import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

from .http import http_get, wait_until


class Daemon:
    """A daemon process started with args, stdout and stderr in log_path (when None, a new
    file in the stack's log folder, $KCHAT_STATE_DIR/logs, or else the temporary folder).
    Its poll, wait, send_signal, terminate, kill and pid are the process's."""

    def __init__(self, binary, args=(), log_path=None, env=None):
        if log_path is None:
            logs = Path(os.environ.get("KCHAT_STATE_DIR", "/nonexistent")) / "logs"
            fd, log_path = tempfile.mkstemp(prefix=f"{Path(binary).name}-", suffix=".log",
                                            dir=logs if logs.is_dir() else None)
            os.close(fd)
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "w+")
        self.proc = subprocess.Popen([str(binary), *args], stdout=self.log,
                                     stderr=subprocess.STDOUT,
                                     env=os.environ if env is None else env)

    def __getattr__(self, name):
        return getattr(self.proc, name)

    def healthy(self, base, what="the daemon healthy", timeout=60.0):
        """Waits until base + "/health" answers 200 (True) or the process has exited
        (False)."""
        wait_until(lambda: self.proc.poll() is not None or
                   http_get(base + "/health", timeout=2)[0] == 200, what, timeout=timeout)
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig (SIGKILL after timeout seconds) and returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def text(self):
        return self.log_path.read_text()

    def entries(self):
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]


def start(binary, args, base, what, log_path=None, env=None, timeout=60.0):
    """A Daemon whose /health (at base) answers 200; raises with the end of its log when it
    exits first."""
    d = Daemon(binary, args, log_path, env)
    if not d.healthy(base, what, timeout):
        d.stop()
        raise AssertionError(f"{what}: exited {d.proc.returncode}: {d.text()[-2000:]}")
    return d
