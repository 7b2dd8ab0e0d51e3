"""Load and back-pressure: a reader that cannot keep up is closed without slowing anyone
else, and one gateway holds 10 000 idle sockets, whose memory per socket is measured, written
to the test's output (docs/benchmarks.md quotes it) and held under 4 KiB.

KCHAT_GW_CONNS sets the number of sockets (default 10000; 2000 in the sanitizer pass, which
measures no memory and only checks that many sockets open, work and are released)."""
import asyncio
import base64
import json
import os
import resource
import socket
import time

import pytest
import websockets

from kchat_testkit.gateway import (Gateway, collect, connect, create_conversation, recv_until,
                                   send, token, uid, wait_routes)

CONNS = int(os.environ.get("KCHAT_GW_CONNS",
                           "2000" if os.environ.get("SANITIZE") == "1" else "10000"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_slow_reader_is_closed_and_nobody_else_slows(tmp_path):
    gw = Gateway(tmp_path, args=["--max-queued-bytes=1048576", "--rate-conn=10000",
                                 "--rate-user=10000", "--max-inflight=10000"])
    try:
        async def body():
            a, slow, fast = uid(), uid(), uid()
            convo = create_conversation(a, [slow, fast])
            hdr = lambda u: {"Authorization": "Bearer " + token(u)}
            wa = await websockets.connect(gw.url(), additional_headers=hdr(a), max_size=None,
                                      max_queue=None)
            wf = await websockets.connect(gw.url(), additional_headers=hdr(fast), max_size=None,
                                      max_queue=None)
            # the slow reader: a small receive buffer, and it never reads
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", gw.ws_port))
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                       f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token(slow)}\r\n\r\n")
                      .encode())
            await wait_routes([(a, gw.slot), (slow, gw.slot), (fast, gw.slot)])
            # 8 MB: more than the kernel buffers and the queue. Words, not one 16 KB word, which
            # Postgres' full-text index of the read model would refuse to index (a NOTICE).
            n, text = 500, "lorem ipsum " * 1333
            # the fast reader reads all along
            reader = asyncio.create_task(
                collect(wf, lambda f: f["type"] == "message.create", n, timeout=120))
            acks = []
            for start in range(0, n, 25):  # a window of 25 unacked messages
                for i in range(start, start + 25):
                    await send(wa, type="message.send", convo_id=convo,
                               client_msg_id=f"p{i}", content=text)
                acks += await collect(wa, lambda f: f["type"] == "ack", 25, timeout=60)
            assert all(f["status"] == "ok" for f in acks)
            got = await reader
            assert [f["seq_no"] for f in got] == list(range(1, n + 1))
            assert gw.metric("kchat_gateway_slow_consumer_closes_total") >= 1
            assert gw.metric("kchat_gateway_send_queue_drops_total") >= 1
            # the slow reader finds, after what the kernel had buffered, the close 4008
            s.settimeout(10)
            data = b""
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    data += d
            except (ConnectionResetError, socket.timeout):
                pass
            assert b"\x88" in data and b"\x0f\xa8slow consumer" in data  # 4008 = 0x0fa8
            s.close()
            await wa.close()
            await wf.close()
        asyncio.run(body())
    finally:
        assert gw.stop() == 0


async def open_raw(port, tok, sem):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 f"Authorization: Bearer {tok}\r\n\r\n").encode())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 60)
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        return r, w


def test_ten_thousand_idle_connections_and_their_memory(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CONNS + 1000
    if hard < need:
        pytest.skip(f"the descriptor limit ({hard}) is below {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The raw client answers no pings: keep the idle policy from dropping its sockets while
    # the rest open (a slow run, e.g. under ASan, takes longer than idle-timeout-s).
    gw = Gateway(tmp_path, args=[f"--max-connections={CONNS + 100}", "--ping-interval-s=3600",
                                 "--idle-timeout-s=7200"])
    try:
        async def body():
            users = [uid() for _ in range(CONNS // 10)]
            toks = [token(u) for u in users]
            sem = asyncio.Semaphore(100)
            # warm-up: pools and caches that any first sockets allocate
            warm = await asyncio.gather(*(open_raw(gw.ws_port, toks[i % len(toks)], sem)
                                          for i in range(100)))
            for _, w in warm:
                w.close()
            await asyncio.sleep(1)
            base = rss_kib(gw.proc.pid)
            t0 = time.monotonic()
            conns = await asyncio.gather(*(open_raw(gw.ws_port, toks[i % len(toks)], sem)
                                           for i in range(CONNS)))
            took = time.monotonic() - t0
            await asyncio.sleep(2)
            assert gw.metric("kchat_gateway_connections") == CONNS
            held = rss_kib(gw.proc.pid)
            per_conn = (held - base) * 1024 / CONNS
            # every socket still works: a frame on the last one is answered
            r, w = conns[-1]
            payload = json.dumps({"type": "x"}).encode()
            mask = os.urandom(4)
            w.write(bytes([0x81, 0x80 | len(payload)]) + mask +
                    bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            hdr = await asyncio.wait_for(r.readexactly(2), 10)
            assert hdr[0] == 0x81
            report = (f"gateway: {CONNS} idle WebSockets ({len(users)} users) opened in "
                      f"{took:.1f} s; RSS {base} KiB -> {held} KiB; "
                      f"{per_conn:.0f} bytes per connection")
            print("\n" + report)
            (tmp_path / "report.txt").write_text(report + "\n")
            out = os.environ.get("KCHAT_GW_REPORT")
            if out:
                with open(out, "a") as f:
                    f.write(report + "\n")
            if os.environ.get("SANITIZE") != "1":  # ASan's shadow memory and redzones
                # lws' state (about 1.3 KiB), its receive buffer (--rx-buffer-bytes, 1 KiB),
                # the gateway's session and its user: about 3 KiB
                assert per_conn < 4096, report
            for _, w in conns:
                w.close()
            deadline = time.monotonic() + 60
            while gw.metric("kchat_gateway_connections") > 0:
                assert time.monotonic() < deadline, "sockets not released"
                await asyncio.sleep(0.2)
        asyncio.run(body())
    finally:
        assert gw.stop() == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
