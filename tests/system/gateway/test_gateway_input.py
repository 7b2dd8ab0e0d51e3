"""What the gateway refuses: tokens and Origins at the handshake (HTTP 401 / 403 before any
upgrade), bad frames (an error frame, the connection stays), the WebSocket layer's own limits
(1009 too large, 1007 invalid UTF-8), rate limits, and through all of it the gateway keeps
serving everyone else. Messages far longer than the socket's receive buffer
(--rx-buffer-bytes), whole or fragmented, up to --max-frame-bytes, arrive intact."""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import struct
import time

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kchat_testkit.gateway import (GW_PORT, PRIVATE_KEY, Gateway, RawWS, connect,
                                   create_conversation, metric, recv_json, recv_until, send, token,
                                   uid, wait_routes, ws_url)

MAX_FRAME = int(os.environ.get("KCHAT_MAX_FRAME_BYTES", "65536"))  # the stack's gateways


def other_private_key():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def public_pem():
    k = serialization.load_pem_private_key(PRIVATE_KEY.encode(), None)
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unsigned_token(sub):
    now = int(time.time())
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"iss": "kchat", "aud": "kchat", "sub": sub, "iat": now,
                              "nbf": now, "exp": now + 900}).encode())
    return f"{head}.{body}."


def refused(tok=None, headers=None, path="/ws"):
    """Opens a raw handshake; returns (HTTP status, JSON body or None)."""
    h = dict(headers or {})
    if tok is not None:
        h["Authorization"] = "Bearer " + tok
    ws = RawWS(None, headers=h, path=path)
    status = ws.status
    body = ws.buf
    # read the rest of the body (content-length)
    length = 0
    for line in ws.head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":")[1])
    while len(body) < length:
        d = ws.s.recv(4096)
        if not d:
            break
        body += d
    ws.close()
    return status, json.loads(body) if body else None


@pytest.mark.parametrize("case", ["missing", "garbage", "forged", "none", "hs256_confusion",
                                  "expired", "not_yet_valid", "wrong_issuer", "wrong_audience"])
def test_a_bad_token_gets_401_before_the_upgrade(case):
    sub = uid()
    tok = {
        "missing": None,
        "garbage": "not.a.token",
        "forged": token(sub, key=other_private_key()),
        "none": unsigned_token(sub),
        "hs256_confusion": None,  # made below
        "expired": token(sub, ttl=-300),
        "not_yet_valid": token(sub, nbf_in=600),
        "wrong_issuer": token(sub, iss="someone-else"),
        "wrong_audience": token(sub, aud="another-service"),
    }[case]
    if case == "hs256_confusion":
        # HS256 keyed with the public key: the classic RS/HS confusion
        now = int(time.time())
        head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64url(json.dumps({"iss": "kchat", "aud": "kchat", "sub": sub, "iat": now,
                                  "nbf": now, "exp": now + 900}).encode())
        sig = hmac.new(public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        tok = f"{head}.{body}.{b64url(sig)}"
    status, body = refused(tok)
    assert status == 401, (case, body)
    assert body["error"]["code"].startswith("token_"), body
    assert body["error"]["message"]


def test_a_token_in_the_query_string_is_accepted_for_browsers():
    async def body():
        a = uid()
        async with websockets.connect(f"ws://127.0.0.1:{GW_PORT}/ws?access_token={token(a)}") as ws:
            await send(ws, type="nonsense")
            f = await recv_json(ws)
            assert f["error"]["code"] == "unknown_type"
    asyncio.run(body())


def test_a_foreign_origin_gets_403_and_no_origin_is_allowed():
    status, body = refused(token(uid()), headers={"Origin": "https://evil.example"})
    assert status == 403 and body["error"]["code"] == "origin_refused"
    ok = RawWS(uid())  # no Origin header: a non-browser client
    assert ok.status == 101
    ok.close()


def test_other_paths_and_plain_http_are_refused():
    status, _ = refused(token(uid()), path="/other")
    assert status == 404
    ws = RawWS(None, headers={"Upgrade": "h2c", "Connection": "Upgrade"})
    assert ws.status in (400, 403)
    ws.close()


def test_bad_frames_get_error_frames_and_the_connection_stays():
    async def body():
        a, b = uid(), uid()
        stranger = uid()
        convo = create_conversation(a, [b])
        ws = await connect(a, 0)
        cases = [
            ("not json at all", "bad_json"),
            ("[1, 2, 3]", "bad_json"),
            (json.dumps({"no": "type"}), "invalid"),
            (json.dumps({"type": 42}), "invalid"),
            (json.dumps({"type": "message.explode"}), "unknown_type"),
            (json.dumps({"type": "message.send", "convo_id": convo, "content": "x"}), "invalid"),

            (json.dumps({"type": "message.read", "convo_id": convo, "seq_no": "one"}), "invalid"),
            (json.dumps({"type": "message.read", "convo_id": convo, "seq_no": 0}), "invalid"),
            (json.dumps({"type": "sync", "convo_id": convo}), "invalid"),
            (json.dumps({"type": "presence.subscribe", "user_ids": "u_x"}), "invalid"),
            (json.dumps({"type": "typing.start"}), "invalid"),
        ]
        for text, code in cases:
            await ws.send(text)
            f = await recv_json(ws)
            assert f["type"] == "error", (text, f)
            assert f["error"]["code"] == code, (text, f)
            assert f["error"]["message"]
        # a message.send whose client_msg_id was read: its own ack says what was wrong
        for frame in ({"client_msg_id": "m1", "content": "x"},
                      {"convo_id": "bad id!", "client_msg_id": "m2", "content": "x"},
                      {"convo_id": convo, "client_msg_id": "m3", "content": ""},
                      {"convo_id": convo, "client_msg_id": "m4"}):
            await send(ws, type="message.send", **frame)
            f = await recv_json(ws)
            assert (f["type"], f["client_msg_id"], f["status"], f["error"]["code"]) == (
                "ack", frame["client_msg_id"], "error", "invalid"), (frame, f)
            assert f["error"]["message"]
        # a frame that is too long in content: an ack with an error, not a close
        await send(ws, type="message.send", convo_id=convo, client_msg_id="big",
                   content="x" * 20000)
        f = await recv_json(ws)
        assert (f["type"], f["status"], f["error"]["code"]) == ("ack", "error", "too_large")
        # the connection still works
        await wait_routes([(a, 0)])
        await send(ws, type="message.send", convo_id=convo, client_msg_id="ok-1", content="fine")
        ack, _ = await recv_until(ws, lambda f: f["type"] == "ack")
        assert ack["status"] == "ok"
        # a conversation the user is not in: the processor refuses, the ack says why
        ws2 = await connect(stranger, 1)
        await send(ws2, type="message.send", convo_id=convo, client_msg_id="intruder",
                   content="let me in")
        ack, _ = await recv_until(ws2, lambda f: f["type"] == "ack")
        assert ack["status"] == "error" and ack["error"]["code"] == "not_member", ack
        assert "seq_no" not in ack
        await ws.close()
        await ws2.close()
    asyncio.run(body())


def test_an_oversized_message_closes_with_1009_and_others_are_served():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        bystander = await connect(b, 0)
        ws = await connect(a, 0)
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.send(json.dumps({"type": "message.send", "convo_id": convo,
                                      "client_msg_id": "huge", "content": "x" * 70000}))
            await recv_json(ws)
        assert e.value.rcvd.code == 1009
        # fragmented: the whole message counts, not one fragment
        ws = await connect(a, 0)
        with pytest.raises(websockets.ConnectionClosed) as e:
            await ws.send(("y" * 30000 for _ in range(3)))
            await recv_json(ws)
        assert e.value.rcvd.code == 1009
        await send(bystander, type="typing.stop", convo_id=convo)  # not typing: no answer
        await send(bystander, type="nonsense")
        # The conversation's creation may reach the bystander live (conversation.update) when
        # its route was registered before the processor got to the command: not an answer.
        f, skipped = await recv_until(bystander, lambda f: f.get("type") != "conversation.update")
        assert f["error"]["code"] == "unknown_type", (f, skipped)
        await bystander.close()
    asyncio.run(body())


def test_invalid_utf8_closes_with_1007():
    ws = RawWS(uid())
    ws.send_frame(0x1, b'{"type":"\xff\xfe"}')
    code, _ = ws.recv_until_close()
    assert code == 1007
    ws.close()


def test_binary_frames_close_with_1003():
    ws = RawWS(uid())
    ws.send_frame(0x2, b"\x00\x01")
    code, _ = ws.recv_until_close()
    assert code == 1003
    ws.close()


def test_message_rate_is_limited_per_connection():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        ws = await connect(a, 1)
        await wait_routes([(a, 1)])
        before = metric(1, "kchat_gateway_acks_total", 'status="error"')
        for i in range(60):  # the default burst is 40 (twice 20/s)
            await send(ws, type="message.send", convo_id=convo, client_msg_id=f"r{i}",
                       content="spam")
        acks = {}
        while len(acks) < 60:
            f = await recv_json(ws, 30)
            if f["type"] == "ack":
                acks[f["client_msg_id"]] = f
        limited = [f for f in acks.values() if f["status"] == "error"]
        assert limited and all(f["error"]["code"] == "rate_limited" for f in limited)
        assert 30 <= sum(f["status"] == "ok" for f in acks.values()) < 60
        assert metric(1, "kchat_gateway_acks_total", 'status="error"') >= before + len(limited)
        await ws.close()
    asyncio.run(body())


def test_a_socket_does_not_outlive_its_token():
    """A token that expired 27 s ago still passes the 30 s clock-skew leeway; the socket is
    closed with 4001 once the leeway is over too."""
    async def body():
        a = uid()
        ws = await websockets.connect(f"ws://127.0.0.1:{GW_PORT}/ws", additional_headers={
            "Authorization": "Bearer " + token(a, ttl=-27)})
        with pytest.raises(websockets.ConnectionClosed) as e:
            while True:
                await recv_json(ws, 30)
        assert e.value.rcvd.code == 4001
        assert "token expired" in e.value.rcvd.reason
    asyncio.run(body())


def test_message_rate_is_limited_per_user_over_its_sockets():
    """Three sockets of one user each stay under the per-socket burst (40), but together pass
    the per-user burst (100): the user's excess is refused."""
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        socks = [await connect(a, 2) for _ in range(3)]
        for k, ws in enumerate(socks):
            for i in range(38):
                await send(ws, type="message.send", convo_id=convo, client_msg_id=f"u{k}-{i}",
                           content="burst")
        statuses = []
        for ws in socks:
            got = 0
            while got < 38:
                f = await recv_json(ws, 30)
                if f["type"] == "ack":
                    got += 1
                    statuses.append(f["status"] if f["status"] != "error"
                                    else f["error"]["code"])
        assert statuses.count("rate_limited") >= 10, statuses
        assert set(statuses) <= {"ok", "rate_limited"}
        for ws in socks:
            await ws.close()
    asyncio.run(body())


# ---- messages longer than the receive buffer ----

def padded_unknown(n):
    """A text message of exactly n bytes that the gateway answers with unknown_type."""
    head, tail = b'{"type":"x","pad":"', b'"}'
    return head + b"p" * (n - len(head) - len(tail)) + tail


def escaped(text):
    """text as the body of a JSON string with every character a \\u escape."""
    return "".join(f"\\u{ord(ch):04x}" for ch in text)


def long_send(convo, cmid, wire_len):
    """A message.send of exactly wire_len bytes. Its ASCII words are written as \\u escapes (6
    bytes on the wire for 1 of content), so the frame reaches max-frame-bytes while the content
    stays under max-content-bytes; in the middle, a run of raw 2-, 3- and 4-byte characters
    that the receive buffer's pieces and the fragments cut through. Returns (the frame, the
    content a reader must get)."""
    head = (f'{{"type":"message.send","convo_id":"{convo}","client_msg_id":"{cmid}",'
            f'"content":"').encode()
    tail = b'"}'
    raw = "é€𝄞 " * 120  # 1 200 bytes
    budget = wire_len - len(head) - len(tail) - len(raw.encode())
    n, odd = divmod(budget, 6)
    words = ("kchat assembles long messages " * (n // 30 + 1))[:n]
    content = words[:n // 2] + raw + words[n // 2:] + "z" * odd
    wire = (head + (escaped(words[:n // 2]) + raw + escaped(words[n // 2:]) + "z" * odd).encode()
            + tail)
    assert len(wire) == wire_len and len(content.encode()) < 16384
    return wire, content


def send_fragmented(ws, data, cuts):
    """Sends data as one text message in fragments cut at the given offsets."""
    bounds = [0, *sorted(set(cuts)), len(data)]
    for i in range(len(bounds) - 1):
        ws.send_frame(0x1 if i == 0 else 0x0, data[bounds[i]:bounds[i + 1]],
                      fin=i == len(bounds) - 2)


def raw_until(ws, ftype):
    """Reads text frames until one of type ftype; returns it."""
    while True:
        fin, op, payload = ws.recv_frame()
        if op == 0x1:
            f = json.loads(payload)
            if f["type"] == ftype:
                return f


def check_long_messages_arrive_intact(port, slot, wire_len):
    """One message whole and the same in uneven fragments (cuts inside multi-byte characters
    and escapes), from a raw socket to a member on the same gateway: acked, and its content
    delivered byte for byte."""
    a, b = uid(), uid()
    convo = create_conversation(a, [b])
    sender, reader = RawWS(a, port=port), RawWS(b, port=port)
    asyncio.run(wait_routes([(a, slot), (b, slot)]))
    for mode in ("whole", "fragmented"):
        wire, content = long_send(convo, f"long-{mode}", wire_len)
        if mode == "whole":
            sender.send_frame(0x1, wire)
        else:
            raw_at = wire.index("é".encode())
            send_fragmented(sender, wire, [1, 700, raw_at + 1, raw_at + 1024 + 2, raw_at + 1203,
                                           wire_len // 2 + 3, wire_len - 5000, wire_len - 1])
        ack = raw_until(sender, "ack")
        assert (ack["client_msg_id"], ack["status"]) == (f"long-{mode}", "ok"), ack
        got = raw_until(reader, "message.create")
        assert got["seq_no"] == ack["seq_no"]
        assert got["content"] == content, mode
    sender.close()
    reader.close()


def test_long_messages_far_over_the_receive_buffer_arrive_intact():
    check_long_messages_arrive_intact(GW_PORT, 0, MAX_FRAME - 16)


@pytest.mark.parametrize("mode", ["whole", "fragmented"])
def test_a_message_of_max_frame_bytes_is_read_and_one_byte_more_is_1009(mode):
    ws = RawWS(uid())
    for n, ok in ((MAX_FRAME, True), (MAX_FRAME + 1, False)):
        data = padded_unknown(n)
        if mode == "whole":
            ws.send_frame(0x1, data)
        else:
            send_fragmented(ws, data, [3, 4096, 4097, n - 2])
        if ok:
            fin, op, payload = ws.recv_frame()
            assert json.loads(payload)["error"]["code"] == "unknown_type"
        else:
            code, _ = ws.recv_until_close()
            assert code == 1009
    ws.close()


def test_the_smallest_receive_buffer_still_serves_every_frame(tmp_path):
    """--rx-buffer-bytes=128: a 125-byte ping (the largest control frame) is answered, long
    messages are assembled from 128-byte pieces, whole and fragmented, invalid UTF-8 in a later
    piece is 1007, the size limit 1009, and a close with a 123-byte reason is echoed."""
    gw = Gateway(tmp_path, args=["--rx-buffer-bytes=128"])
    try:
        ws = RawWS(uid(), port=gw.ws_port)
        ws.send_frame(0x9, bytes(range(125)))
        assert ws.recv_frame()[1:] == (0xA, bytes(range(125)))
        ws.send_frame(0x1, padded_unknown(5000))
        assert json.loads(ws.recv_frame()[2])["error"]["code"] == "unknown_type"
        ws.send_frame(0x8, struct.pack("!H", 1000) + b"r" * 123)
        code, _ = ws.recv_until_close()
        assert code == 1000
        ws.close()
        check_long_messages_arrive_intact(gw.ws_port, gw.slot, 60000)
        ws = RawWS(uid(), port=gw.ws_port)
        bad = bytearray(padded_unknown(3000))
        bad[2000:2003] = b"\xed\xa0\x80"  # a UTF-16 surrogate: not UTF-8
        ws.send_frame(0x1, bytes(bad))
        code, _ = ws.recv_until_close()
        assert code == 1007
        ws.close()
        ws = RawWS(uid(), port=gw.ws_port)
        ws.send_frame(0x1, padded_unknown(65537))
        code, _ = ws.recv_until_close()
        assert code == 1009
        ws.close()
    finally:
        assert gw.stop() == 0
