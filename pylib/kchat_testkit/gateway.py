"""The gateways' clients for the system tests: tokens minted with PyJWT from the stack's
private key, WebSocket clients (the `websockets` library, and a raw-frame client for the
protocol cases), conversations made with commands on chat.commands, and extra gateways
started by a test on ports inside the stack's range."""
import asyncio
import base64
import json
import os
import signal
import socket
import struct
import time
import uuid

import jwt
import pytest
import redis
import websockets
import yaml

from .daemon import Daemon
from .metrics import metric as scrape_metric
from .stack import DAEMONS, NGATEWAYS, ROOT
from .wire import Commands, command

ENV = os.environ
BASE = int(ENV["KCHAT_PORT_BASE"])
GW_PORT = int(ENV["KCHAT_GATEWAY_PORT"])
GW_ADMIN = int(ENV["KCHAT_GATEWAY_ADMIN_PORT"])
PRIVATE_KEY = (ENV["KCHAT_JWT_PRIVATE_KEY"] and open(ENV["KCHAT_JWT_PRIVATE_KEY"]).read())
GATEWAY = DAEMONS["gateway"]["binary"]


ASYNCAPI = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())


def spec_payload(message):
    """The JSON schema of a frame, as docs/asyncapi.yaml gives it (components/messages/
    <message>), with its references resolved."""
    def resolve(node):
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                target = ASYNCAPI
                for part in node["$ref"].lstrip("#/").split("/"):
                    target = target[part]
                return resolve(target)
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node
    return resolve(ASYNCAPI["components"]["messages"][message]["payload"])


def uid(prefix="u"):
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def token(sub, key=None, alg="RS256", ttl=900, nbf_in=0, iss="kchat", aud="kchat", **extra):
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": sub, "name": sub[:20], "iat": now,
              "nbf": now + nbf_in, "exp": now + ttl, "jti": str(uuid.uuid4()), **extra}
    return jwt.encode(claims, key if key is not None else PRIVATE_KEY, algorithm=alg)


def ws_url(i=0, port=None):
    return f"ws://127.0.0.1:{port or GW_PORT + i}/ws"


async def connect(user, i=0, port=None, **kw):
    return await websockets.connect(ws_url(i, port),
                                    additional_headers={"Authorization": "Bearer " + token(user)},
                                    max_size=None, **kw)


def redis_client():
    return redis.Redis(host="127.0.0.1", port=int(ENV["KCHAT_REDIS_PORT"]), decode_responses=True)


def route_registered(user, slot):
    r = redis_client()
    v = r.hget(f"kchat:route:{user}", str(slot))
    return v is not None and int(v) > time.time() * 1000


async def wait_routes(users_slots, timeout=20):
    """Waits until every (user, slot) is in the presence registry, so the processor routes
    events to it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(route_registered(u, s) for u, s in users_slots):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"routes not registered: {users_slots}")


def members_projected(convo, users, timeout=30):
    """Waits until kchat-projector has the members in the Redis read model."""
    r = redis_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gen = r.get("kchat:rm:gen")
        if gen and set(users) <= r.smembers(f"kchat:rm:{gen}:members:{convo}"):
            return
        time.sleep(0.05)
    pytest.fail(f"members of {convo} not in the Redis read model")


_commands = None


def create_conversation(creator, members, title="t"):
    """Creates a conversation through chat.commands (origin api:, so no delivery back)."""
    global _commands
    if _commands is None:
        _commands = Commands(ENV["KCHAT_KAFKA_BROKERS"])
    convo = uid("c")
    _commands.send(command(convo, creator, "CreateConversation",
                           {"title": title, "members": list(members)}, origin="api:test"))
    _commands.flush()
    return convo


async def recv_json(ws, timeout=20):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws, pred, timeout=20):
    """Reads frames until pred(frame); returns (frame, frames skipped)."""
    skipped = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no matching frame; got {skipped[-5:]}")
        f = await recv_json(ws, left)
        if pred(f):
            return f, skipped
        skipped.append(f)


async def collect(ws, pred, n, timeout=30):
    """Reads frames until n of them satisfy pred; returns those, in arrival order."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"got {len(got)} of {n} frames: {got[-3:]}")
        f = await recv_json(ws, left)
        if pred(f):
            got.append(f)
    return got


async def quiet(ws, seconds=0.5):
    """Frames that arrive within `seconds` (to check nothing unexpected came)."""
    got = []
    try:
        while True:
            got.append(await recv_json(ws, seconds))
    except asyncio.TimeoutError:
        return got


async def send(ws, **frame):
    await ws.send(json.dumps(frame))


def metric(i, name, labels=""):
    """A sample of gateway i's /metrics (0 when absent)."""
    return scrape_metric(f"http://127.0.0.1:{GW_ADMIN + i}", name, labels)


class Gateway:
    """A gateway started by a test (slot 3 by default). Its ports are base+100+n (WebSocket)
    and base+200+n (operations), inside the stack's range; the stack's base may sit in the
    kernel's ephemeral range, where an outgoing connection can hold a port for a while, so a
    port in use moves it to the next n."""

    def __init__(self, tmp_path, k=0, slot=3, args=()):
        self.slot = slot
        for attempt in range(10):
            n = k * 10 + attempt
            self.ws_port, self.admin_port = BASE + 100 + n, BASE + 200 + n
            self.log_path = tmp_path / f"gateway-{k}-{attempt}.log"
            self.daemon = Daemon(GATEWAY, [f"--slot={slot}", f"--listen-port={self.ws_port}",
                                           f"--admin-port={self.admin_port}",
                                           f"--schemas-dir={ROOT / 'schemas'}", *args],
                                 self.log_path)
            self.proc = self.daemon.proc
            if self.daemon.healthy(f"http://127.0.0.1:{self.admin_port}",
                                   "extra gateway healthy"):
                return
            self.daemon.log.close()
            if "in use" not in self.log_path.read_text():
                break
        pytest.fail("extra gateway did not start: " + self.log_path.read_text()[-2000:])

    def url(self, scheme="ws"):
        return f"{scheme}://127.0.0.1:{self.ws_port}/ws"

    def metric(self, name, labels=""):
        return scrape_metric(f"http://127.0.0.1:{self.admin_port}", name, labels)

    def stop(self, sig=signal.SIGTERM):
        return self.daemon.stop(sig)

    def entries(self):
        return self.daemon.entries()


class RawWS:
    """A WebSocket client that writes frames byte by byte, for the protocol cases."""

    def __init__(self, user, port=GW_PORT, headers=None, path="/ws"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        if user:
            hdrs["Authorization"] = "Bearer " + token(user)
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.s.sendall((req + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1]) if head else 0
        self.head = head.decode(errors="replace")

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            hdr += key
        self.s.sendall(hdr + payload)

    def _read(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed by the server")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """(fin, opcode, payload) of the next frame from the server."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        assert not b1 & 0x80, "server frames must not be masked"
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def recv_until_close(self):
        """Reads until the server's close frame: (close code, frames before it)."""
        before = []
        while True:
            fin, op, payload = self.recv_frame()
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, before
            before.append((op, payload))

    def at_eof(self, timeout=10):
        """True once the server has closed the TCP connection."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()
