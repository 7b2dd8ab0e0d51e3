"""A bad configuration value stops start-up with a message that names it, and exit status 2."""
import json
import os
import subprocess

import pytest

from kchat_testkit.stack import DAEMONS

BAD = [
    (["--log-level=loud"], {}, "log-level"),
    (["--shutdown-timeout-ms=5"], {}, "shutdown-timeout-ms"),
    ([], {"KCHAT_SHUTDOWN_TIMEOUT_MS": "soon"}, "KCHAT_SHUTDOWN_TIMEOUT_MS"),
    (["--redis-port=70000"], {}, "redis-port"),
    (["--no-such-option=1"], {}, "no-such-option"),
    (["--kafka-brokers="], {}, "kafka-brokers"),
]

# What a daemon cannot start without (options with no default), so that the bad value is the
# only thing wrong: the archiver's object store.
REQUIRED = {
    "archiver": {"KCHAT_S3_ENDPOINT": "http://127.0.0.1:1", "KCHAT_S3_BUCKET": "archive",
                 "KCHAT_S3_ACCESS_KEY": "key", "KCHAT_S3_SECRET_KEY": "secret"},
}


def run(binary, args, env_extra):
    env = dict(os.environ, **env_extra)
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env,
                          timeout=30)


@pytest.mark.parametrize("name", sorted(DAEMONS))
@pytest.mark.parametrize("args,env,named", BAD)
def test_bad_value_stops_start_up(name, args, env, named):
    r = run(DAEMONS[name]["binary"], args, {**REQUIRED.get(name, {}), **env})
    assert r.returncode == 2, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    errors = [entry for entry in lines if entry["level"] == "error"]
    assert errors, r.stderr
    assert named in errors[-1]["msg"], errors[-1]["msg"]
    assert errors[-1]["msg"].startswith("invalid configuration")


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_help_lists_every_option_with_its_variable(name):
    r = run(DAEMONS[name]["binary"], ["--help-markdown"], {})
    assert r.returncode == 0
    rows = [line for line in r.stdout.splitlines() if line.startswith("| `--")]
    assert rows
    for row in rows:
        flag = row.split("`")[1][2:]
        env = "KCHAT_" + flag.upper().replace("-", "_")
        assert f"`{env}`" in row


def test_a_flag_overrides_a_bad_variable():
    # Orchestrators inject variables of their own (a Service named kchat-redis sets
    # KCHAT_REDIS_PORT=tcp://...): a flag for the same option must win without a fight.
    r = run(DAEMONS["api"]["binary"], ["--redis-port=1", "--help"], {"KCHAT_REDIS_PORT": "tcp://x"})
    assert r.returncode == 0
    r = run(DAEMONS["api"]["binary"], ["--listen-port=70000"], {"KCHAT_REDIS_PORT": "tcp://x"})
    assert r.returncode == 2
    assert "KCHAT_REDIS_PORT" in r.stderr  # without the flag the variable counts
