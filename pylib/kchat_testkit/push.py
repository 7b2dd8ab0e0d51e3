"""A local Web Push service and a webhook receiver for the notifier's tests, checked with
libraries of their own: the push service accepts RFC 8030 requests, verifies the VAPID JWT
(RFC 8292, ES256 with the key the request names) with `cryptography` and decrypts the
aes128gcm payload (RFC 8291) with `http_ece`; the receiver verifies Standard Webhooks
signatures with `standardwebhooks`. Both listen on loopback on a port of their own and
record what they took; a test scripts their answers per path (status, Retry-After, delay)."""
import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from standardwebhooks.webhooks import Webhook


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Subscription:
    """A browser's side of a push subscription: its P-256 key pair and auth secret."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def keys(self):
        raw = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        return {"p256dh": b64u(raw), "auth": b64u(self.auth)}

    def body(self):
        return {"endpoint": self.endpoint, "keys": self.keys()}


def verify_vapid(authorization, endpoint_origin):
    """Checks an Authorization header "vapid t=<jwt>, k=<key>": the JWT's ES256 signature
    under k, aud the push service's origin, exp within 24 hours, a sub. Returns (claims, k)."""
    assert authorization and authorization.startswith("vapid "), authorization
    parts = dict(p.strip().split("=", 1) for p in authorization[6:].split(","))
    t, k = parts["t"], parts["k"]
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(k))
    head, claims, sig = t.split(".")
    assert json.loads(unb64u(head)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64u(sig)
    assert len(raw) == 64, len(raw)
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                     int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    c = json.loads(unb64u(claims))
    assert c["aud"] == endpoint_origin, (c, endpoint_origin)
    assert time.time() < c["exp"] <= time.time() + 24 * 3600 + 60, c
    assert c["sub"].startswith(("mailto:", "https:")), c
    return c, k


class _Server:
    """A threaded HTTP server on 127.0.0.1 with scripted answers per path."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []        # what was taken, in arrival order (each a dict)
        self.arrived = []    # every request as it arrived, answered or not
        self.script = {}     # path -> list of (status, headers, delay_s), used in order
        self.default = (201, {}, 0)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    steps = outer.script.get(self.path)
                    status, extra, delay = steps.pop(0) if steps else outer.default
                    outer.arrived.append({"path": self.path, "t": time.monotonic()})
                if delay:
                    time.sleep(delay)
                record = outer.take(self.path, self.headers, body, status)
                record["status"] = status
                record["answered"] = time.monotonic()
                with outer.lock:
                    outer.got.append(record)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take(self, path, headers, body, status):
        return {"path": path, "headers": dict(headers), "body": body}

    def answer(self, path, *steps):
        """The next answers to path: (status, headers, delay_s) each, then the default."""
        with self.lock:
            self.script[path] = list(steps)

    def taken(self, path=None, ok=True):
        """Requests to path (all paths: None) that were answered 2xx (ok) or any."""
        with self.lock:
            return [g for g in self.got if (path is None or g["path"] == path) and
                    (not ok or 200 <= g["status"] < 300)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class PushService(_Server):
    """Endpoints /push/<name>: each request is checked (VAPID, headers) and decrypted with the
    subscription registered for its path; record["payload"] is the JSON it carried."""

    def __init__(self):
        self.subs = {}
        super().__init__()

    def subscription(self, name):
        s = Subscription(f"{self.origin}/push/{name}")
        self.subs[f"/push/{name}"] = s
        return s

    def take(self, path, headers, body, status):
        sub = self.subs[path]
        claims, k = verify_vapid(headers.get("Authorization"), self.origin)
        assert headers.get("Content-Encoding") == "aes128gcm", headers
        assert int(headers.get("TTL")) >= 0, headers
        assert headers.get("Urgency") in ("very-low", "low", "normal", "high"), headers
        topic = headers.get("Topic")
        assert topic and len(topic) <= 32, topic
        plain = http_ece.decrypt(body, private_key=sub.key, auth_secret=sub.auth,
                                 version="aes128gcm")
        return {"path": path, "headers": dict(headers), "topic": topic,
                "urgency": headers.get("Urgency"), "vapid_key": k, "claims": claims,
                "payload": json.loads(plain)}


class WebhookReceiver(_Server):
    """Endpoint /hook: the signature is verified with the secret (Standard Webhooks);
    record["data"] is the body's JSON, record["id"] its webhook-id."""

    def __init__(self, secret):
        self.webhook = Webhook(secret)
        super().__init__()

    def take(self, path, headers, body, status):
        h = {k.lower(): v for k, v in dict(headers).items()}
        data = self.webhook.verify(body.decode(), h)  # raises on a bad signature
        return {"path": path, "headers": h, "id": h["webhook-id"], "data": data}
