"""kchat-gateway on the real stack: three gateways (slots 0, 1, 2), the processor and Kafka.
Clients are the `websockets` library with tokens minted here; conversations are made with
commands on chat.commands."""
import asyncio
import json
import time

import pytest
import websockets

from kchat_testkit.gateway import (NGATEWAYS, collect, connect, create_conversation, metric,
                                   quiet, recv_json, recv_until, redis_client,
                                   route_registered, send, uid, wait_routes)

pytestmark = pytest.mark.skipif(NGATEWAYS < 3, reason="needs three gateways (KCHAT_GATEWAYS=3)")


def is_create(f):
    return f["type"] == "message.create"


def is_ack(f):
    return f["type"] == "ack"


def test_three_gateways_chat_in_the_same_order():
    """A on gateway 0 and B on gateway 1 send at the same time; C on gateway 2 reads. Every
    client ends with messages 1..2n, each seq_no once, with the same content everywhere, and
    each client's live frames arrive in increasing seq_no."""
    async def body():
        a, b, c = uid(), uid(), uid()
        convo = create_conversation(a, [b, c])
        wa, wb, wc = await connect(a, 0), await connect(b, 1), await connect(c, 2)
        await wait_routes([(a, 0), (b, 1), (c, 2)])
        n = 30

        async def sender(ws, who):
            acks = []
            for i in range(n):
                await send(ws, type="message.send", convo_id=convo,
                           client_msg_id=f"{who}-{i}", content=f"{who} says {i}")
                if i % 10 == 9:  # keep under the rate limit's burst
                    await asyncio.sleep(0.3)
            return acks

        await asyncio.gather(sender(wa, "a"), sender(wb, "b"))
        # A sees its own messages as acks and B's as message.create; B the reverse; C all.
        fa = await collect(wa, lambda f: is_ack(f) or is_create(f), 2 * n)
        fb = await collect(wb, lambda f: is_ack(f) or is_create(f), 2 * n)
        fc = await collect(wc, is_create, 2 * n)
        views = {}
        for who, frames in (("a", fa), ("b", fb), ("c", fc)):
            assert all(f.get("status", "ok") == "ok" for f in frames), frames
            creates = [f["seq_no"] for f in frames if is_create(f)]
            assert creates == sorted(creates), f"{who} got creates out of order: {creates}"
            by_seq = {}
            for f in frames:
                seq = f["seq_no"]
                assert seq not in by_seq, f"{who} got seq {seq} twice"
                by_seq[seq] = f["client_msg_id"]
            assert sorted(by_seq) == list(range(1, 2 * n + 1))
            views[who] = by_seq
        assert views["a"] == views["b"] == views["c"]
        # per sender, its messages keep the order they were sent in
        for who in ("a", "b"):
            mine = [views["c"][s] for s in sorted(views["c"]) if views["c"][s].startswith(who)]
            assert mine == [f"{who}-{i}" for i in range(n)]
        for ws in (wa, wb, wc):
            await ws.close()
    asyncio.run(body())


def test_ack_carries_the_event_fields_and_the_others_get_message_create():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        wa, wb = await connect(a, 0), await connect(b, 1)
        await wait_routes([(a, 0), (b, 1)])
        t0 = int(time.time() * 1000)
        await send(wa, type="message.send", convo_id=convo, client_msg_id="m-1", content="héllo")
        ack, _ = await recv_until(wa, is_ack)
        assert ack == {"type": "ack", "client_msg_id": "m-1", "status": "ok", "convo_id": convo,
                       "server_msg_id": f"{convo}:1", "seq_no": 1}
        mc, _ = await recv_until(wb, is_create)
        assert mc["convo_id"] == convo and mc["seq_no"] == 1 and mc["sender_id"] == a
        assert mc["server_msg_id"] == f"{convo}:1" and mc["client_msg_id"] == "m-1"
        assert mc["content"] == "héllo" and mc["content_type"] == "text/plain"
        assert mc["created_at"] >= t0 - 5000
        await wa.close()
        await wb.close()
    asyncio.run(body())


def test_a_retried_send_gets_the_same_ack_and_nothing_is_duplicated():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        wa, wb = await connect(a, 0), await connect(b, 2)
        await wait_routes([(a, 0), (b, 2)])
        frame = dict(type="message.send", convo_id=convo, client_msg_id="retry-1", content="x")
        await send(wa, **frame)
        first, _ = await recv_until(wa, is_ack)
        await send(wa, **frame)  # the retry, once the first was acked
        second, _ = await recv_until(wa, is_ack)
        # and a retry from another connection of the same user (a reconnect)
        await wa.close()
        wa2 = await connect(a, 1)
        await wait_routes([(a, 1)])
        await send(wa2, **frame)
        third, _ = await recv_until(wa2, is_ack)
        assert first["status"] == "ok"
        assert second["status"] == third["status"] == "duplicate"
        for f in (second, third):
            assert (f["server_msg_id"], f["seq_no"]) == (first["server_msg_id"], first["seq_no"])
        # then a new message: B has exactly messages 1 and 2
        await send(wa2, type="message.send", convo_id=convo, client_msg_id="retry-2",
                   content="y")
        got = await collect(wb, is_create, 2)
        assert [f["seq_no"] for f in got] == [1, 2]
        assert [f["client_msg_id"] for f in got] == ["retry-1", "retry-2"]
        assert [f for f in await quiet(wb) if is_create(f)] == []
        await wa2.close()
        await wb.close()
    asyncio.run(body())


def test_the_senders_other_devices_get_the_message():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        a1, a2, a3 = await connect(a, 0), await connect(a, 0), await connect(a, 1)
        await wait_routes([(a, 0), (a, 1)])
        await send(a1, type="message.send", convo_id=convo, client_msg_id="dev-1", content="hi")
        ack, _ = await recv_until(a1, is_ack)
        assert ack["status"] == "ok"
        for other in (a2, a3):  # same gateway, and another gateway
            mc, _ = await recv_until(other, is_create)
            assert (mc["seq_no"], mc["client_msg_id"], mc["sender_id"]) == (1, "dev-1", a)
        # the sending connection gets the ack only, not the message again
        assert [f for f in await quiet(a1) if is_create(f)] == []
        for ws in (a1, a2, a3):
            await ws.close()
    asyncio.run(body())


def test_routes_are_registered_while_connected_and_removed_on_disconnect():
    async def body():
        a = uid()
        ws = await connect(a, 2)
        await wait_routes([(a, 2)])
        until = int(redis_client().hget(f"kchat:route:{a}", "2"))
        assert until > time.time() * 1000
        await ws.close()
        deadline = time.monotonic() + 10
        while redis_client().hget(f"kchat:route:{a}", "2") is not None:
            assert time.monotonic() < deadline, "route still registered after the disconnect"
            await asyncio.sleep(0.05)
    asyncio.run(body())


def test_message_read_reaches_the_members():
    async def body():
        a, b, c = uid(), uid(), uid()
        convo = create_conversation(a, [b, c])
        wa, wb, wc = await connect(a, 0), await connect(b, 1), await connect(c, 2)
        await wait_routes([(a, 0), (b, 1), (c, 2)])
        await send(wa, type="message.send", convo_id=convo, client_msg_id="r-1", content="read me")
        await recv_until(wa, is_ack)
        await recv_until(wb, is_create)
        await recv_until(wc, is_create)
        await send(wb, type="message.read", convo_id=convo, seq_no=1)
        for ws in (wa, wc, wb):  # the members, the reader's own connection included
            f, _ = await recv_until(ws, lambda f: f["type"] == "message.read")
            assert (f["convo_id"], f["user_id"], f["seq_no"]) == (convo, b, 1)
        # a marker beyond the last message is refused by the processor: an error frame
        await send(wb, type="message.read", convo_id=convo, seq_no=99)
        err, _ = await recv_until(wb, lambda f: f["type"] == "error")
        assert err["error"]["code"] == "no_such_message"
        assert err["in_reply_to"] == "message.read"
        for ws in (wa, wb, wc):
            await ws.close()
    asyncio.run(body())


def test_delivery_receipts_reach_the_sender_only():
    async def body():
        a, b, c = uid(), uid(), uid()
        convo = create_conversation(a, [b])
        wa, wb = await connect(a, 0), await connect(b, 1)
        wc = await connect(c, 1)  # not a member
        await wait_routes([(a, 0), (b, 1), (c, 1)])
        await send(wa, type="message.send", convo_id=convo, client_msg_id="d-1", content="hi")
        f, _ = await recv_until(wa, lambda f: f["type"] == "message.delivery")
        assert (f["convo_id"], f["seq_no"], f["user_id"]) == (convo, 1, b)
        assert f["delivered_at"] > 0
        assert [x for x in await quiet(wc) if x["type"] == "message.delivery"] == []
        assert [x for x in await quiet(wb) if x["type"] == "message.delivery"] == []
        for ws in (wa, wb, wc):
            await ws.close()
    asyncio.run(body())


def test_metrics_count_frames_acks_and_latency():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        before = metric(0, "kchat_gateway_acks_total", 'status="ok"')
        wa, wb = await connect(a, 0), await connect(b, 0)
        await wait_routes([(a, 0), (b, 0)])
        assert metric(0, "kchat_gateway_connections") >= 2
        await send(wa, type="message.send", convo_id=convo, client_msg_id="m", content="x")
        await recv_until(wa, is_ack)
        await recv_until(wb, is_create)
        assert metric(0, "kchat_gateway_acks_total", 'status="ok"') == before + 1
        assert metric(0, "kchat_gateway_frames_in_total", 'type="message.send"') >= 1
        assert metric(0, "kchat_gateway_frames_out_total", 'type="message.create"') >= 1
        assert metric(0, "kchat_gateway_ack_latency_seconds_count") >= 1
        assert metric(0, "kchat_gateway_delivery_latency_seconds_count") >= 1
        await wa.close()
        await wb.close()
    asyncio.run(body())
