"""The local ingress (scripts/nginx.sh, web/nginx.conf.in) in front of the running stack: the
client at / with the SPA fallback, the REST paths to kchat-api, /ws to the gateways with the
upgrade, /metrics kept off, TLS when a certificate is set, and no access token in its log.

Each test starts its own nginx with its own state folder and a stand-in client folder
(a page with a marker), so they need neither `npm run build` nor a stack's nginx."""
import json
import os
import socket
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from kchat_testkit.gateway import GW_PORT, token, uid
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.stack import ENV, ROOT

NGINX_SH = ROOT / "scripts" / "nginx.sh"
API = f"http://127.0.0.1:{ENV['KCHAT_API_PORT']}"
MARKER = "kchat-ingress-test-page"


def nginx(cmd, env, check=True):
    r = subprocess.run([str(NGINX_SH), cmd], env=env, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        pytest.fail(f"nginx.sh {cmd} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def dist(tmp_path):
    d = tmp_path / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text(f"<!doctype html><title>{MARKER}</title>")
    (d / "assets" / "app-1234abcd.js").write_text("console.log('kchat');")
    return d


def ingress_env(tmp_path, dist, port, **extra):
    env = dict(os.environ)
    env.update(KCHAT_STATE_DIR=str(tmp_path / "state"), KCHAT_INGRESS_PORT=str(port),
               KCHAT_WEB_DIST=str(dist))
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def ingress(tmp_path, dist):
    port = free_port()  # not the stack's own ingress (base + 88), which may be running
    env = ingress_env(tmp_path, dist, port)
    nginx("start", env)
    yield {"url": f"http://127.0.0.1:{port}", "dir": tmp_path / "state" / "nginx", "env": env}
    nginx("stop", env)
    assert not listening(port), "nginx still listens after stop"
    assert nginx("status", env, check=False).returncode == 3


def test_client_at_root_with_spa_fallback(ingress):
    for path in ["/", "/index.html", "/c/some-conversation", "/deep/link/x"]:
        status, headers, body = http_get(ingress["url"] + path)
        assert status == 200, path
        assert MARKER in body.decode(), path
    # hashed bundles are cached for good; a missing one is a 404, not the page
    status, headers, body = http_get(ingress["url"] + "/assets/app-1234abcd.js")
    assert status == 200 and b"kchat" in body
    assert "max-age=315360000" in headers.get("Cache-Control", "")
    status, _, _ = http_get(ingress["url"] + "/assets/missing.js")
    assert status == 404
    # the page itself is revalidated, and locked to its own origin
    status, headers, _ = http_get(ingress["url"] + "/")
    assert headers.get("Cache-Control") == "no-cache"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert "default-src 'self'" in headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "")


def csp_of(url):
    """The page's Content-Security-Policy as {directive: [sources]}."""
    _, headers, _ = http_get(url + "/")
    out = {}
    for part in headers.get("Content-Security-Policy", "").split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


STRICT = {"default-src": ["'self'"], "style-src": ["'self'"], "object-src": ["'none'"],
          "base-uri": ["'none'"], "frame-ancestors": ["'none'"]}


@pytest.mark.parametrize("settings,origin", [
    # nothing set: the page reaches its own origin only
    ({}, None),
    # the object store the API presigns for (scripts/stack.sh exports KCHAT_S3_ENDPOINT)
    ({"KCHAT_S3_ENDPOINT": "http://127.0.0.1:17040"}, "http://127.0.0.1:17040"),
    ({"KCHAT_S3_ENDPOINT": "https://S3.Example.com/some/path"}, "https://s3.example.com"),
    # the origin browsers reach it at, when it is another
    ({"KCHAT_S3_ENDPOINT": "http://minio:9000", "KCHAT_INGRESS_S3_ORIGIN": "https://files.example.com:8443"},
     "https://files.example.com:8443"),
])
def test_csp_lets_the_page_reach_the_object_store_only(tmp_path, dist, settings, origin):
    """Attachments go straight between the browser and the object store: its origin joins
    'self' in connect-src (the upload) and img-src (thumbnails), nowhere else, and the rest of
    the policy stays as strict."""
    port = free_port()
    env = ingress_env(tmp_path, dist, port)
    for k in ("KCHAT_S3_ENDPOINT", "KCHAT_INGRESS_S3_ORIGIN"):
        env.pop(k, None)
    env.update(settings)
    nginx("start", env)
    try:
        csp = csp_of(f"http://127.0.0.1:{port}")
    finally:
        nginx("stop", env)
    extra = [origin] if origin else []
    assert csp == {**STRICT, "connect-src": ["'self'", *extra], "img-src": ["'self'", "data:", *extra]}, csp


@pytest.mark.parametrize("bad", ["ftp://files.example.com", "http://x.example.com;script-src *",
                                 "http://x.example.com/'a", "files.example.com"])
def test_a_bad_object_store_origin_is_refused(tmp_path, dist, bad):
    env = ingress_env(tmp_path, dist, free_port(), KCHAT_INGRESS_S3_ORIGIN=bad)
    r = nginx("start", env, check=False)
    assert r.returncode != 0 and "not an http(s) URL" in r.stderr, r.stderr
    assert not (tmp_path / "state" / "nginx" / "nginx.conf").exists()


def test_the_object_store_answers_the_pages_preflight():
    """The browser PUTs an attachment to the stack's MinIO from the ingress's origin with a
    Content-Type header: MinIO answers its CORS preflight for that origin (scripts/minio.sh,
    KCHAT_MINIO_CORS_ORIGINS)."""
    base = int(ENV["KCHAT_PORT_BASE"])
    origin = f"http://127.0.0.1:{8080 if base == 17000 else base + 88}"
    url = (f"http://127.0.0.1:{ENV['KCHAT_MINIO_PORT']}/{ENV['KCHAT_S3_BUCKET']}"
           "/attachments/c_x/a_x/f/photo.png?X-Amz-Algorithm=AWS4-HMAC-SHA256")
    status, headers, _ = http_get(url, method="OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type"})
    assert status in (200, 204), status
    assert headers.get("Access-Control-Allow-Origin") in (origin, "*"), headers
    assert "PUT" in headers.get("Access-Control-Allow-Methods", ""), headers
    assert "content-type" in headers.get("Access-Control-Allow-Headers", "").lower(), headers


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/health", None),
    ("POST", "/auth/login", b'{"username":"nobody","password":"x"}'),
    ("POST", "/auth/register", b'{}'),
    ("GET", "/conversations", None),
    ("GET", "/conversations/c_x/messages?limit=1", None),
    ("GET", "/search?q=hello", None),
    ("POST", "/attachments/presign", b'{}'),
    ("GET", "/push/vapid-public-key", None),
])
def test_rest_paths_reach_kchat_api(ingress, method, path, body):
    """The ingress answers each REST path exactly as kchat-api does when asked directly."""
    headers = {"Content-Type": "application/json"}
    direct = http_get(API + path, method=method, data=body, headers=headers)
    via = http_get(ingress["url"] + path, method=method, data=body, headers=headers)
    assert via[0] == direct[0], f"{path}: {via[0]} through the ingress, {direct[0]} direct"
    assert "json" in via[1].get("Content-Type", "")
    if path != "/health":
        assert json.loads(via[2]) == json.loads(direct[2])
    else:
        assert json.loads(via[2])["status"] == json.loads(direct[2])["status"]
    # and it was proxied, not answered by the SPA fallback (nginx logs a request once it is
    # done, which may be just after the client has the answer)
    api = f"upstream=127.0.0.1:{ENV['KCHAT_API_PORT']}"
    wait_until(lambda: api in (ingress["dir"] / "access.log").read_text(),
               "the request in the access log", timeout=10)


def test_metrics_stay_off_the_ingress(ingress):
    assert http_get(API + "/metrics")[0] == 200
    status, headers, body = http_get(ingress["url"] + "/metrics")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


def ws_handshake(url, path, headers=()):
    """Sends a WebSocket upgrade request by hand, with extra header lines, and returns the
    status line's code (0 when the connection closed without an answer) and the bytes."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{h}\r\n" for h in headers)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return (int(data.split(b" ", 2)[1]) if data else 0), data


def test_ws_goes_to_the_gateways_and_the_token_is_not_logged(ingress):
    gw_port = int(ENV["KCHAT_GATEWAY_PORT"])
    secret = "not-a-real-token-" + os.urandom(6).hex()
    status, raw = ws_handshake(ingress["url"], f"/ws?access_token={secret}")
    access = ingress["dir"] / "access.log"
    wait_until(lambda: '"GET /ws ' in access.read_text(), "the /ws request in the access log",
               timeout=10)
    log = access.read_text()
    line = [entry for entry in log.splitlines() if '"GET /ws ' in entry][-1]
    if listening(gw_port):
        # the gateway answered: it upgraded or refused the token, but nginx did not stand in
        assert f"upstream=127.0.0.1:{gw_port}" in line
        assert status not in (502, 503, 504), raw
    else:
        # no gateway listens: the ingress says so in the API's error shape
        assert status == 503, raw
        assert b'"code":"unavailable"' in raw or b"unavailable" in raw
    assert secret not in log, "the access token reached the access log"
    assert secret not in (ingress["dir"] / "error.log").read_text()


def test_ws_upgrade_is_passed_through(tmp_path, dist):
    """With a WebSocket server as the only gateway, a client gets through the ingress, both
    ways, with the path and query as sent."""
    import threading

    from websockets.sync.client import connect
    from websockets.sync.server import serve

    def echo(conn):
        conn.send("path=" + conn.request.path)
        for msg in conn:
            conn.send(msg)

    server = serve(echo, "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        gw = server.socket.getsockname()[1]
        port = free_port()
        env = ingress_env(tmp_path, dist, port, KCHAT_INGRESS_GATEWAYS=f"127.0.0.1:{gw}")
        nginx("start", env)
        try:
            with connect(f"ws://127.0.0.1:{port}/ws?access_token=abc") as ws:
                assert ws.recv(timeout=10) == "path=/ws?access_token=abc"
                ws.send("ping through nginx")
                assert ws.recv(timeout=10) == "ping through nginx"
        finally:
            nginx("stop", env)
    finally:
        server.shutdown()
        t.join(10)


def test_tls_when_a_certificate_is_set(tmp_path, dist):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    env = ingress_env(tmp_path, dist, port, KCHAT_INGRESS_TLS_CERT=cert, KCHAT_INGRESS_TLS_KEY=key)
    r = nginx("start", env)
    try:
        assert f"https://127.0.0.1:{port}" in r.stdout
        ctx = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/deep/link", context=ctx, timeout=10) as resp:
            assert resp.status == 200
            assert MARKER in resp.read().decode()
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=ctx, timeout=10) as resp:
            assert json.loads(resp.read())["status"] in ("ok", "fail")
        # plain HTTP on the TLS port is refused
        status, _, _ = http_get(f"http://127.0.0.1:{port}/")
        assert status == 400
    finally:
        nginx("stop", env)


@pytest.mark.parametrize("extra,expect", [
    ({"KCHAT_INGRESS_GATEWAYS": "not an address"}, "is not host:port"),
    ({"KCHAT_INGRESS_PORT": "99999"}, "must be a port number"),
    ({"KCHAT_INGRESS_WS_TIMEOUT_S": "5"}, "at least 10"),
    ({"KCHAT_INGRESS_TLS_CERT": "/nonexistent.pem"}, "must both name readable PEM files"),
    ({"KCHAT_WEB_DIST": "/nonexistent"}, "the web client is not built"),
])
def test_bad_settings_are_refused_with_a_reason(tmp_path, dist, extra, expect):
    port = free_port()
    env = ingress_env(tmp_path, dist, port, **extra)
    r = nginx("start", env, check=False)
    assert r.returncode == 1
    assert expect in r.stderr
    assert not listening(port)
    assert not Path(tmp_path / "state" / "nginx" / "nginx.pid").exists()


def test_an_oversized_handshake_is_refused_by_the_ingress_and_fails_no_gateway(tmp_path, dist):
    """A handshake whose header is larger than a gateway holds gets 431 from the ingress, never
    reaches a gateway, and so never marks one failed: the next handshakes, also one of 10 KB
    that the gateways hold, are served by the gateways."""
    gws = ",".join(f"127.0.0.1:{GW_PORT + i}" for i in range(3))
    port = free_port()
    env = ingress_env(tmp_path, dist, port, KCHAT_INGRESS_GATEWAYS=gws)
    nginx("start", env)
    try:
        url = f"http://127.0.0.1:{port}"
        pad = [f"X-Pad-{i}: " + "a" * 3500 for i in range(6)]  # 21 KB
        for _ in range(3):
            status, raw = ws_handshake(url, "/ws", pad)
            assert status == 431, raw
            assert b'"code":"header_too_large"' in raw
        auth = "Authorization: Bearer " + token(uid())
        for i in range(6):
            status, raw = ws_handshake(url, "/ws", [auth] + pad[:3])  # 10.5 KB: held
            assert status == 101, raw
        log = (tmp_path / "state" / "nginx" / "access.log").read_text()
        assert "upstream_status=-" not in log.splitlines()[-1]
    finally:
        nginx("stop", env)


def test_a_gateway_holds_a_handshake_of_10_kb():
    status, raw = ws_handshake(f"http://127.0.0.1:{GW_PORT}", "/ws",
                                ["Authorization: Bearer " + token(uid())] +
                                [f"X-Pad-{i}: " + "a" * 3500 for i in range(3)])
    assert status == 101, raw


def test_a_request_header_trickled_in_is_cut_by_the_ingress(ingress):
    """Slow clients meet the ingress's own bounds (client_header_timeout), not kchat-api's
    connection slots: the ingress answers 408 or closes, and serves others meanwhile."""
    host, port = ingress["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(1)
        closed = False
        for i in range(40):  # a header line a second, never the end of the header
            status = http_get(ingress["url"] + "/metrics")[0]
            assert status == 404  # others are served meanwhile
            try:
                s.sendall(f"X-Slow-{i}: {i}\r\n".encode())
                data = s.recv(4096)
                if data == b"" or data.startswith(b"HTTP/1.1 408"):
                    closed = True
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "40 s of a trickled header and the ingress still waits"
