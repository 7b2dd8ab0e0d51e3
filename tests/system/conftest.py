"""Shared fixtures for the system tests.

The stack (Kafka, Postgres, Redis, the four daemons) is started by scripts/test.sh before
pytest runs; its addresses come from the same environment (scripts/env.sh).
"""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KCHAT_BUILD_DIR", ROOT / "build"))
ENV = os.environ

DAEMONS = {
    "processor": {"binary": BUILD / "processor" / "kchat-processor",
                  "health": f"http://127.0.0.1:{ENV.get('KCHAT_PROCESSOR_ADMIN_PORT')}"},
    "projector": {"binary": BUILD / "projector" / "kchat-projector",
                  "health": f"http://127.0.0.1:{ENV.get('KCHAT_PROJECTOR_ADMIN_PORT')}"},
    "gateway": {"binary": BUILD / "gateway" / "kchat-gateway",
                "health": f"http://127.0.0.1:{ENV.get('KCHAT_GATEWAY_ADMIN_PORT')}"},
    "api": {"binary": BUILD / "api" / "kchat-api",
            "health": f"http://127.0.0.1:{ENV.get('KCHAT_API_PORT')}"},
}


def http_get(url, timeout=5, method="GET", data=None, headers=None):
    """Returns (status, headers, body bytes) without raising on HTTP errors."""
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, what, timeout=60.0, interval=0.1):
    """Polls fn until it returns a truthy value; fails the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, urllib.error.URLError) as e:  # not up yet
            last = e
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def read_log_lines(text):
    """Parses JSON log lines; every line a daemon writes must be a JSON object."""
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        lines.append(json.loads(raw))
    return lines


@pytest.fixture(scope="session")
def brokers():
    return ENV["KCHAT_KAFKA_BROKERS"]


@pytest.fixture(scope="session")
def pg_dsn():
    return ENV["KCHAT_PG_DSN"]


@pytest.fixture(scope="session")
def redis_port():
    return int(ENV["KCHAT_REDIS_PORT"])


def psql(sql, *args):
    """Runs one statement through psql (an independent client) and returns the rows."""
    cmd = ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", ENV["KCHAT_PG_DSN"], "-c", sql]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]
