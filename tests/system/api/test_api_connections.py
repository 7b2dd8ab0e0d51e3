"""kchat-api's own port against slow and many connections: one client address holds at most
--max-connections-per-address of them (more are closed at accept, other addresses are still
served), a request trickled in slower than --request-timeout-s is cut without an answer
however often it sends a byte, and a request with two Content-Length headers that differ is
refused. Each test runs an API of its own that trusts no proxy, so 127.0.0.1 is a client
like any other (127.0.0.2 is another one: the loopback network answers for all of 127/8)."""
import socket
import time

from kchat_testkit.api import api_instance
from kchat_testkit.metrics import metric


def connect(base, source="127.0.0.1"):
    host, port = base.removeprefix("http://").split(":")
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect((host, int(port)))
    return s


def closed_without_answer(s):
    """True when the server closed s (EOF or reset) without sending a byte."""
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True


def get(base, path, source="127.0.0.1"):
    """The answer's bytes; b"" when the server closed the connection at once."""
    s = connect(base, source)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        return data
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()


def test_one_address_holds_at_most_its_share_of_connections():
    p, base = api_instance("--trusted-proxies=", "--max-connections-per-address=4")
    held = []
    try:
        held = [connect(base) for _ in range(4)]
        extra = connect(base)
        assert closed_without_answer(extra)
        extra.close()
        # another address is served, and so is this one once it lets one go
        assert get(base, "/health", source="127.0.0.2").startswith(b"HTTP/1.1 ")
        held.pop().close()
        for _ in range(50):  # the close reaches the server
            reply = get(base, "/health")
            if reply:
                break
            time.sleep(0.1)
        assert reply.startswith(b"HTTP/1.1 "), reply
        assert metric(base, "kchat_api_connections_refused_total") >= 1
    finally:
        for s in held:
            s.close()
        p.stop()


def test_a_request_trickled_in_is_cut_however_often_it_sends():
    p, base = api_instance("--trusted-proxies=", "--request-timeout-s=2")
    try:
        s = connect(base)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(0.5)
        cut = False
        for i in range(60):  # a header line every half second, never the end of the header
            try:
                s.sendall(f"X-Slow-{i}: {i}\r\n".encode())
                if s.recv(4096) == b"":
                    cut = True
                    break
                assert False, "the server answered a request it never had whole"
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
        s.close()
        assert cut, "30 s of a trickled header and the connection is still open"
        assert get(base, "/health").startswith(b"HTTP/1.1 200")  # the server serves on
        assert metric(base, "kchat_api_requests_cut_total") >= 1
    finally:
        p.stop()


def test_two_content_lengths_that_differ_are_refused():
    p, base = api_instance("--trusted-proxies=")
    try:
        s = connect(base)
        s.sendall(b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{}")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 400"), data
        assert b'"code":"bad_request"' in data
    finally:
        p.stop()
