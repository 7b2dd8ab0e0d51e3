"""The web client's own tests, from pytest: the Vitest unit tests always, and the end-to-end
tests (playwright-core driving Debian's Chromium) against the stack's ingress when the stack
runs one (scripts/nginx.sh, started by scripts/stack.sh up on KCHAT_INGRESS_PORT).

Their screenshots go to tests/artifacts/web/. The sanitizer pass skips this module: the browser
checks run once, in the plain pass, and the C paths they reach have system tests of their own."""
import os
import re
import shutil
import socket
import subprocess

import pytest

from kchat_testkit.stack import ENV, ROOT

pytestmark = pytest.mark.skipif(os.environ.get("SANITIZE") == "1",
                                reason="the sanitizer pass does not repeat the browser checks")

WEB = ROOT / "web"
ARTIFACTS = ROOT / "tests" / "artifacts" / "web"


def ingress_port():
    if ENV.get("KCHAT_INGRESS_PORT"):
        return int(ENV["KCHAT_INGRESS_PORT"])
    base = int(ENV["KCHAT_PORT_BASE"])
    return 8080 if base == 17000 else base + 88


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(cmd, timeout):
    r = subprocess.run(cmd, cwd=WEB, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "CI": "true", "NO_COLOR": "1", "FORCE_COLOR": "0"})
    if r.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {r.returncode}\n{r.stdout[-20000:]}\n{r.stderr[-5000:]}")
    return r.stdout


def all_passed(out):
    """Whether vitest's closing summary says every file and test passed, none failed or skipped:
    "Test Files  11 passed (11)" and "Tests  84 passed (84)". Only those lines are read, since
    a test may print what it saw (a browser's warning with the word "failed" in it)."""
    summary = dict(m.groups() for m in re.finditer(r"^\s*(Test Files|Tests)\s+(.*?)\s*$", out,
                                                   re.MULTILINE))
    return set(summary) == {"Test Files", "Tests"} and all(
        re.fullmatch(r"(\d+) passed \(\1\)", v) for v in summary.values())


@pytest.fixture(scope="module")
def node_modules():
    """The exact dependencies of web/package-lock.json (npm ci), unless already installed."""
    assert shutil.which("npm"), "npm is not installed (scripts/deps.sh installs nodejs and npm)"
    lock = WEB / "package-lock.json"
    stamp = WEB / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], timeout=600)


def test_unit(node_modules):
    out = run(["npm", "test", "--silent"], timeout=300)
    assert all_passed(out), out[-5000:]


def test_typecheck(node_modules):
    run(["npm", "run", "typecheck", "--silent"], timeout=300)


def test_end_to_end(node_modules):
    # Earlier tests kill and fence daemons of the stack; bring back whatever is not running
    # (`up` leaves running ones alone and waits for every /health).
    up = subprocess.run([str(ROOT / "scripts" / "stack.sh"), "up"], capture_output=True, text=True,
                        timeout=300)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    port = ingress_port()
    if not listening(port):
        pytest.skip(f"this stack runs no ingress on {port} (scripts/stack.sh does not start "
                    "scripts/nginx.sh yet)")
    out = run(["node", "e2e/run.mjs", f"http://127.0.0.1:{port}", "--artifacts", str(ARTIFACTS)],
              timeout=900)
    assert all_passed(out), out[-5000:]
    for shot in ["01-login", "02-conversation-list", "04-conversation", "05-offline",
                 "07-phone-list", "08-phone-conversation", "10-search-jump", "12-deep-link",
                 "14-notification", "15-muted", "16-upload-progress", "17-attachments",
                 "18-file-card"]:
        assert (ARTIFACTS / f"{shot}.png").stat().st_size > 1000, shot
