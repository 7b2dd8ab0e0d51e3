"""The WebSocket layer with raw frames written by the test, following Autobahn|Testsuite's
case list as a checklist (the case numbers name the groups covered):

  1.1.x / 1.2.x  text and binary messages: text served, binary refused with 1003
  2.x            pings are answered with pongs carrying the same payload; unsolicited pongs
                 are ignored; a ping over 125 bytes is a protocol error (1002)
  3.x            reserved bits set without an extension: 1002
  4.x            reserved opcodes (data 3-7, control 11-15): 1002
  5.x            fragmentation: a message in fragments is assembled, control frames may come
                 between fragments, a fragmented control frame or a continuation without a
                 start or a new message inside a fragmented one is 1002
  6.x            UTF-8: invalid text closes with 1007, also when the bad sequence is split
                 across fragments; valid multi-byte text split anywhere is accepted
  7.x            close handshake: the server answers a close with the same code; an
                 invalid close code (e.g. 1005, 999) or a close payload of one byte is 1002
  9.x (size)     the message size limit: 1009 (test_gateway_input.py)
plus the server's own side: idle and half-open peers are pinged and dropped, TLS, and the
drain on SIGTERM. Not covered: unmasked client frames, which lws 4.1 accepts although RFC
6455 5.1 says a server must close (Autobahn, a client-side suite for servers, always masks)."""
import asyncio
import json
import signal
import ssl
import struct
import subprocess
import time

import pytest
import websockets

from kchat_testkit.gateway import (GW_PORT, Gateway, RawWS, recv_until, redis_client, send,
                                   token, uid)

UNKNOWN = json.dumps({"type": "x"}).encode()  # answered by an error frame: proof it was read


def expect_error_frame(ws):
    fin, op, payload = ws.recv_frame()
    assert (fin, op) == (True, 1)
    assert json.loads(payload)["error"]["code"] == "unknown_type"


def test_1_1_text_message_is_served():
    ws = RawWS(uid())
    ws.send_frame(0x1, UNKNOWN)
    expect_error_frame(ws)
    ws.close()


def test_2_ping_gets_pong_with_the_same_payload_and_pongs_are_ignored():
    ws = RawWS(uid())
    ws.send_frame(0xA, b"unsolicited")  # 2.7: ignored
    ws.send_frame(0x9, b"hello ping")
    fin, op, payload = ws.recv_frame()
    assert (op, payload) == (0xA, b"hello ping")
    ws.send_frame(0x9, b"")  # 2.2: empty payload
    assert ws.recv_frame()[1:] == (0xA, b"")
    ws.send_frame(0x9, b"\x00\xff\xfe" * 41)  # 2.3: binary payload, 123 bytes
    assert ws.recv_frame()[1:] == (0xA, b"\x00\xff\xfe" * 41)
    ws.close()


def test_2_5_ping_over_125_bytes_fails_the_connection():
    """Autobahn 2.5 accepts a close with 1002 or the connection dropped: lws drops it."""
    ws = RawWS(uid())
    ws.send_frame(0x9, b"x" * 126)
    try:
        code, _ = ws.recv_until_close()
        assert code == 1002
    except ConnectionError:
        pass
    assert ws.at_eof()
    ws.close()


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_3_reserved_bits_are_a_protocol_error(rsv):
    ws = RawWS(uid())
    ws.send_frame(0x1, UNKNOWN, rsv=rsv)
    code, _ = ws.recv_until_close()
    assert code == 1002
    ws.close()


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcodes_are_a_protocol_error(opcode):
    ws = RawWS(uid())
    ws.send_frame(opcode, b"x")
    code, _ = ws.recv_until_close()
    assert code == 1002
    ws.close()


def test_5_fragments_are_assembled_with_control_frames_between():
    ws = RawWS(uid())
    text = UNKNOWN
    ws.send_frame(0x1, text[:5], fin=False)
    ws.send_frame(0x9, b"mid")  # 5.6: a ping between fragments
    ws.send_frame(0x0, text[5:10], fin=False)
    ws.send_frame(0x0, text[10:], fin=True)
    fin, op, payload = ws.recv_frame()
    assert (op, payload) == (0xA, b"mid")
    expect_error_frame(ws)
    # 5.1-like: one-byte fragments
    ws.send_frame(0x1, text[:1], fin=False)
    for i in range(1, len(text) - 1):
        ws.send_frame(0x0, text[i:i + 1], fin=False)
    ws.send_frame(0x0, text[-1:], fin=True)
    expect_error_frame(ws)
    ws.close()


@pytest.mark.parametrize("case", ["fragmented_ping", "continuation_first", "text_in_text"])
def test_5_broken_fragmentation_is_a_protocol_error(case):
    ws = RawWS(uid())
    if case == "fragmented_ping":  # 5.2
        ws.send_frame(0x9, b"ab", fin=False)
        ws.send_frame(0x0, b"cd", fin=True)
    elif case == "continuation_first":  # 5.9
        ws.send_frame(0x0, b"orphan", fin=True)
    else:  # 5.18-like: a new text message before the first is finished
        ws.send_frame(0x1, b"{", fin=False)
        ws.send_frame(0x1, b"}", fin=True)
    code, _ = ws.recv_until_close()
    assert code == 1002
    ws.close()


def test_6_valid_utf8_split_anywhere_is_accepted():
    ws = RawWS(uid())
    text = json.dumps({"type": "κόσμε 𝄞 x"}, ensure_ascii=False).encode()
    for cut in range(1, len(text)):
        ws.send_frame(0x1, text[:cut], fin=False)
        ws.send_frame(0x0, text[cut:], fin=True)
        expect_error_frame(ws)
    ws.close()


@pytest.mark.parametrize("bad", [b"\xce\xba\xe1\xbd", b"\xed\xa0\x80", b"\xc0\xaf",
                                 b"\xf4\x90\x80\x80"])
def test_6_invalid_utf8_closes_with_1007_also_across_fragments(bad):
    ws = RawWS(uid())
    payload = b'{"type":"' + bad + b'"}'
    ws.send_frame(0x1, payload[:10], fin=False)
    ws.send_frame(0x0, payload[10:], fin=True)
    code, _ = ws.recv_until_close()
    assert code == 1007
    ws.close()


def test_7_close_handshake_echoes_the_code():
    ws = RawWS(uid())
    ws.send_frame(0x8, struct.pack("!H", 1000) + b"bye")
    code, before = ws.recv_until_close()
    assert code == 1000 and before == []
    assert ws.at_eof()
    ws.close()


@pytest.mark.parametrize("payload", [struct.pack("!H", 999), struct.pack("!H", 1005)])
def test_7_invalid_close_codes_are_a_protocol_error(payload):
    ws = RawWS(uid())
    ws.send_frame(0x8, payload)
    code, _ = ws.recv_until_close()
    assert code == 1002
    ws.close()


def test_7_3_2_a_one_byte_close_payload_ends_the_connection():
    """lws answers with a close without a code (seen as 1005) rather than 1002; the
    connection ends either way (Autobahn rates that non-strict)."""
    ws = RawWS(uid())
    ws.send_frame(0x8, b"\x03")
    code, _ = ws.recv_until_close()
    assert code in (1002, 1005)
    assert ws.at_eof()
    ws.close()


def test_idle_and_half_open_peers_are_pinged_then_dropped(tmp_path):
    gw = Gateway(tmp_path, args=["--ping-interval-s=1", "--idle-timeout-s=3"])
    try:
        # a peer that answers pings stays
        alive = RawWS(uid(), port=gw.ws_port)
        # a peer that never reads or answers (as if its network went away)
        dead = RawWS(uid(), port=gw.ws_port)
        deadline = time.monotonic() + 6
        pings = 0
        while time.monotonic() < deadline:
            alive.s.settimeout(0.5)
            try:
                fin, op, payload = alive.recv_frame()
            except (TimeoutError, OSError):
                continue
            if op == 0x9:
                pings += 1
                alive.send_frame(0xA, payload)
        assert pings >= 1
        assert dead.at_eof(timeout=15), "the silent peer was not dropped"
        alive.send_frame(0x1, UNKNOWN)
        alive.s.settimeout(5)
        while True:
            fin, op, payload = alive.recv_frame()
            if op == 0x1:
                assert json.loads(payload)["error"]["code"] == "unknown_type"
                break
        alive.close()
        dead.close()
    finally:
        assert gw.stop() == 0


def test_tls_and_an_allowed_origin(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    gw = Gateway(tmp_path, args=[f"--tls-cert={cert}", f"--tls-key={key}",
                                 "--allowed-origins=https://chat.example, http://localhost:5173"])
    try:
        async def body():
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.check_hostname = False
            a = uid()
            async with websockets.connect(gw.url("wss"), ssl=ctx, origin="https://chat.example",
                                          additional_headers={"Authorization": "Bearer " + token(a)}) as ws:
                await send(ws, type="x")
                f, _ = await recv_until(ws, lambda f: f["type"] == "error")
                assert f["error"]["code"] == "unknown_type"
            with pytest.raises(websockets.InvalidStatus) as e:
                await websockets.connect(gw.url("wss"), ssl=ctx, origin="https://evil.example",
                                         additional_headers={"Authorization": "Bearer " + token(a)})
            assert e.value.response.status_code == 403
            # plain ws:// is not served on a TLS port
            with pytest.raises(Exception):
                await asyncio.wait_for(websockets.connect(gw.url("ws"), additional_headers={
                    "Authorization": "Bearer " + token(a)}), 5)
        asyncio.run(body())
    finally:
        assert gw.stop() == 0


def test_sigterm_sends_a_notice_closes_with_1001_and_deregisters(tmp_path):
    gw = Gateway(tmp_path)
    a = uid()
    ws = RawWS(a, port=gw.ws_port)
    deadline = time.monotonic() + 10
    while redis_client().hget(f"kchat:route:{a}", str(gw.slot)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    gw.proc.send_signal(signal.SIGTERM)
    code, before = ws.recv_until_close()
    assert code == 1001
    notices = [json.loads(p) for op, p in before if op == 1]
    assert notices and notices[-1]["type"] == "system.notice"
    assert notices[-1]["code"] == "going_away"
    ws.send_frame(0x8, struct.pack("!H", 1001))
    assert gw.proc.wait(timeout=30) == 0
    assert redis_client().hget(f"kchat:route:{a}", str(gw.slot)) is None
    msgs = [e["msg"] for e in gw.entries()]
    assert msgs.index("closing the sockets with 1001") < msgs.index("drained")
    ws.close()
    gw.stop()
    # and a stopped gateway takes no new sockets
    with pytest.raises(OSError):
        RawWS(uid(), port=gw.ws_port)


def test_a_websocket_port_in_use_fails_the_start_up(tmp_path):
    import os
    import socket
    from kchat_testkit.gateway import BASE, GATEWAY
    from kchat_testkit.stack import ROOT
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for port in range(BASE + 300, BASE + 320):
        try:
            blocker.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    blocker.listen()
    admin = socket.socket()  # a free operations port, so only the WebSocket port is in use
    for admin_port in range(BASE + 350, BASE + 370):
        try:
            admin.bind(("127.0.0.1", admin_port))
            break
        except OSError:
            continue
    admin.close()
    try:
        p = subprocess.run([str(GATEWAY), "--slot=5", f"--listen-port={port}",
                            f"--admin-port={admin_port}", f"--schemas-dir={ROOT / 'schemas'}"],
                           capture_output=True, text=True, timeout=60, env=os.environ)
    finally:
        blocker.close()
    assert p.returncode == 1
    last = [json.loads(line) for line in p.stderr.splitlines() if line.strip()]
    errors = [e["msg"] for e in last if e["level"] == "error" and e.get("lib") is None]
    assert errors and errors[0].startswith("start-up failed: cannot listen for WebSockets")
