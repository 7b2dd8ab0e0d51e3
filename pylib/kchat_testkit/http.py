"""HTTP without surprises for the tests and the bench: urllib only, no exception on an HTTP
error status, and a poll loop with a deadline."""
import socket
import time
import urllib.error
import urllib.request


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


class WaitTimeout(AssertionError):
    """wait_until's deadline passed (an AssertionError: a test that meets it fails)."""


def wait_until(fn, what, timeout=60.0, interval=0.1):
    """Polls fn until it returns a truthy value and returns it; raises WaitTimeout naming
    `what` otherwise. A connection refused or reset counts as not yet."""
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
    raise WaitTimeout(f"timed out waiting for {what} (last: {last!r})")
