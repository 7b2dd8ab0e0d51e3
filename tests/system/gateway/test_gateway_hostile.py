"""Hostile and unlucky clients of the gateway: what the protocol lets a client do must not
close its own socket or lose its text, nor show it strangers. A backfill larger than the
send-queue bound comes in pages, a sync past the end says where the conversation ends,
frames that cJSON would read in part (text after the object, an escaped U+0000 that would
cut a string) are refused with an error frame on a socket that stays open, and presence is
seen only by people who share a conversation."""
import asyncio
import json

import pytest
import websockets

from kchat_testkit.gateway import (Gateway, collect, connect, create_conversation,
                                  members_projected, metric, quiet, recv_json, recv_until, send,
                                  token, uid)

BIG = 16000  # bytes of content: 70 of them are past the 1 MiB send-queue bound


def is_type(t):
    return lambda f: f["type"] == t


async def send_acked(ws, convo, cmid, content):
    """Sends until acked ok: the per-socket rate limit answers rate_limited to a burst."""
    while True:
        await send(ws, type="message.send", convo_id=convo, client_msg_id=cmid, content=content)
        ack, _ = await recv_until(ws, lambda f: f["type"] == "ack" and f["client_msg_id"] == cmid)
        if ack["status"] == "ok":
            return ack["seq_no"]
        assert ack["error"]["code"] == "rate_limited", ack
        await asyncio.sleep(0.2)


def test_a_backfill_past_the_send_queue_bound_comes_in_pages_on_an_open_socket():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa = await connect(a, 0)
        n = 70
        for i in range(n):
            assert await send_acked(wa, convo, f"big{i}", f"{i:04d}" + "x" * (BIG - 4)) == i + 1
        cut_before = metric(1, "kchat_gateway_sync_pages_cut_total")
        wb = await connect(b, 1)
        got, pages, last = {}, 0, 0
        for _ in range(200):
            await send(wb, type="sync", convo_id=convo, since_seq=last)
            while True:
                f = await recv_json(wb, 30)
                if f["type"] == "sync.complete":
                    break
                if f["type"] == "message.create":
                    assert f["seq_no"] not in got, f"seq {f['seq_no']} sent twice"
                    got[f["seq_no"]] = f
            pages += 1
            while last + 1 in got:
                last += 1
            assert f["up_to_seq"] == last
            if last >= n and not f["more"]:
                break
            if not f["more"]:
                await asyncio.sleep(0.2)  # the projector is still behind: sync again
        assert sorted(got) == list(range(1, n + 1))
        assert all(got[s]["content"].startswith(f"{s - 1:04d}") for s in got)
        assert all(len(got[s]["content"]) == BIG for s in got)
        assert pages >= 3  # 1.1 MB in pages of at most half the bound
        assert metric(1, "kchat_gateway_sync_pages_cut_total") >= cut_before + 2
        # the socket is open and serves
        await send(wb, type="sync", convo_id=convo, since_seq=n)
        f, _ = await recv_until(wb, is_type("sync.complete"))
        assert f["up_to_seq"] == n and f["more"] is False and f["sent"] == 0
        await wa.close()
        await wb.close()
    asyncio.run(body())


def test_a_sync_past_the_end_answers_where_the_conversation_ends():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa = await connect(a, 0)
        for i in range(3):
            await send_acked(wa, convo, f"m{i}", f"m{i}")
        wb = await connect(b, 1)
        for _ in range(100):  # until the read model has the three
            await send(wb, type="sync", convo_id=convo, since_seq=0)
            f, _ = await recv_until(wb, is_type("sync.complete"))
            if f["up_to_seq"] == 3:
                break
            await asyncio.sleep(0.2)
        await send(wb, type="sync", convo_id=convo, since_seq=1000)
        f, _ = await recv_until(wb, is_type("sync.complete"))
        assert f["up_to_seq"] == 3 and f["sent"] == 0 and f["more"] is False
        await wa.close()
        await wb.close()
    asyncio.run(body())


def test_frames_read_only_in_part_are_refused_and_lose_nothing():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa, wb = await connect(a, 0), await connect(b, 1)
        frame = {"type": "message.send", "convo_id": convo, "client_msg_id": "nul",
                 "content": "before\u0000after"}
        await wa.send(json.dumps(frame))  # json.dumps writes the NUL as \u0000
        f, _ = await recv_until(wa, is_type("error"))
        assert f["error"]["code"] == "invalid" and "U+0000" in f["error"]["message"]
        await wa.send(json.dumps({**frame, "client_msg_id": "two", "content": "x"}) + '{"a":1}')
        f, _ = await recv_until(wa, is_type("error"))
        assert f["error"]["code"] == "bad_json"
        # nothing of either was accepted; the socket still serves, and the text "\u0000"
        # (an escaped backslash) is kept whole
        seq = await send_acked(wa, convo, "ok", "a \\u0000 b")
        assert seq == 1
        [m] = await collect(wb, is_type("message.create"), 1)
        assert m["content"] == "a \\u0000 b" and m["client_msg_id"] == "ok"
        await wa.close()
        await wb.close()
    asyncio.run(body())


def test_presence_is_visible_only_to_people_who_share_a_conversation():
    async def body():
        a, b, stranger = uid(), uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        refused_before = metric(0, "kchat_gateway_presence_refused_total")
        ws = await connect(stranger, 0)
        await send(ws, type="presence.subscribe", user_ids=[a, stranger])
        f, skipped = await recv_until(ws, is_type("error"))
        assert f["error"]["code"] == "not_visible" and f["in_reply_to"] == "presence.subscribe"
        assert f["user_ids"] == [a]
        # the stranger's own presence is theirs to see; a's is not sent
        g, _ = await recv_until(ws, is_type("presence.update"))
        assert g["user_id"] == stranger
        wa = await connect(a, 1)
        assert [x for x in await quiet(ws, 1.0) if x["type"] == "presence.update"] == []
        assert metric(0, "kchat_gateway_presence_refused_total") >= refused_before + 1
        # a member sees a
        wb = await connect(b, 2)
        await send(wb, type="presence.subscribe", user_ids=[a])
        f, _ = await recv_until(wb, is_type("presence.update"))
        assert (f["user_id"], f["status"]) == (a, "online")
        for w in (ws, wa, wb):
            await w.close()
    asyncio.run(body())


def test_a_user_holds_at_most_max_conns_per_user_sockets(tmp_path):
    gw = Gateway(tmp_path, k=0, slot=3, args=["--max-conns-per-user=2"])
    try:
        async def body():
            u = uid()
            hdr = {"Authorization": "Bearer " + token(u)}
            w1 = await websockets.connect(gw.url(), additional_headers=hdr)
            w2 = await websockets.connect(gw.url(), additional_headers=hdr)
            with pytest.raises(websockets.InvalidStatus) as e:
                await websockets.connect(gw.url(), additional_headers=hdr)
            assert e.value.response.status_code == 429
            assert json.loads(e.value.response.body)["error"]["code"] == "too_many_connections"
            # another user is not counted against u
            w3 = await websockets.connect(gw.url(), additional_headers={
                "Authorization": "Bearer " + token(uid())})
            await w1.close()
            for _ in range(50):  # the close reaches the gateway
                try:
                    w4 = await websockets.connect(gw.url(), additional_headers=hdr)
                    break
                except websockets.InvalidStatus:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("a socket freed by a close was not taken again")
            for w in (w2, w3, w4):
                await w.close()
        asyncio.run(body())
    finally:
        assert gw.stop() == 0
