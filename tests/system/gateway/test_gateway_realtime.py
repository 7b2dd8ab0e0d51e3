"""Ephemeral traffic and backfill: typing indicators, presence, and sync after a reconnect.
Typing and sync read the read models that kchat-projector keeps (Redis members set, Postgres
rm.messages), so these tests wait for the projection where they must."""
import asyncio
import signal
import time

from kchat_testkit.gateway import (Gateway, collect, connect, create_conversation,
                                   members_projected, quiet, recv_json, recv_until, redis_client,
                                   send, uid, wait_routes)


def is_type(t):
    return lambda f: f["type"] == t


def test_typing_reaches_the_other_members_online_on_any_gateway():
    async def body():
        a, b, c, d = uid(), uid(), uid(), uid()
        convo = create_conversation(a, [b, c])
        members_projected(convo, [a, b, c])
        wa, wb, wc = await connect(a, 0), await connect(b, 1), await connect(c, 2)
        wd = await connect(d, 1)  # connected, not a member
        await wait_routes([(a, 0), (b, 1), (c, 2), (d, 1)])
        await send(wa, type="typing.start", convo_id=convo)
        for ws in (wb, wc):
            f, _ = await recv_until(ws, is_type("typing"))
            assert (f["convo_id"], f["user_id"], f["state"]) == (convo, a, "start")
            assert f["expires_in_ms"] > 0
        await send(wa, type="typing.stop", convo_id=convo)
        for ws in (wb, wc):
            f, _ = await recv_until(ws, is_type("typing"))
            assert (f["user_id"], f["state"]) == (a, "stop")
        assert [f for f in await quiet(wa) if f["type"] == "typing"] == []
        assert [f for f in await quiet(wd) if f["type"] == "typing"] == []
        # someone outside the conversation cannot type into it
        await send(wd, type="typing.start", convo_id=convo)
        f, _ = await recv_until(wd, is_type("error"))
        assert f["error"]["code"] == "not_member"
        assert [f for f in await quiet(wb) if f["type"] == "typing"] == []
        for ws in (wa, wb, wc, wd):
            await ws.close()
    asyncio.run(body())


def test_typing_stops_by_itself_and_on_disconnect(tmp_path):
    gw = Gateway(tmp_path, args=["--typing-ttl-ms=1000"])
    try:
        async def body():
            a, b = uid(), uid()
            convo = create_conversation(a, [b])
            members_projected(convo, [a, b])
            import websockets
            from kchat_testkit.gateway import token
            wa = await websockets.connect(gw.url(), additional_headers={
                "Authorization": "Bearer " + token(a)})
            wb = await connect(b, 0)
            await wait_routes([(a, gw.slot), (b, 0)])
            await send(wa, type="typing.start", convo_id=convo)
            f, _ = await recv_until(wb, is_type("typing"))
            assert f["state"] == "start" and f["expires_in_ms"] == 1000
            # no typing.stop: the gateway ends it after typing-ttl-ms
            f, _ = await recv_until(wb, is_type("typing"), timeout=10)
            assert (f["user_id"], f["state"]) == (a, "stop")
            # typing, then the socket goes away: stop too
            await send(wa, type="typing.start", convo_id=convo)
            f, _ = await recv_until(wb, is_type("typing"))
            assert f["state"] == "start"
            await wa.close()
            f, _ = await recv_until(wb, is_type("typing"), timeout=10)
            assert f["state"] == "stop"
            await wb.close()
        asyncio.run(body())
    finally:
        assert gw.stop() == 0


def test_typing_is_rate_limited():
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa = await connect(a, 0)
        for _ in range(30):
            await send(wa, type="typing.start", convo_id=convo)
        f, _ = await recv_until(wa, is_type("error"))
        assert f["error"]["code"] == "rate_limited"
        await wa.close()
    asyncio.run(body())


def test_presence_updates_reach_only_the_subscribers():
    async def body():
        a, b, d = uid(), uid(), uid()
        convo = create_conversation(a, [b])  # presence is for people who share one
        members_projected(convo, [a, b])
        wb = await connect(b, 0)
        wd = await connect(d, 1)  # connected, subscribed to nobody
        await send(wb, type="presence.subscribe", user_ids=[a])
        f, _ = await recv_until(wb, is_type("presence.update"))
        assert (f["user_id"], f["status"]) == (a, "offline")
        wa = await connect(a, 2)
        f, _ = await recv_until(wb, is_type("presence.update"))
        assert (f["user_id"], f["status"]) == (a, "online")
        # a second device of A changes nothing
        wa2 = await connect(a, 1)
        await wait_routes([(a, 1)])
        await wa2.close()
        t_close = int(time.time() * 1000)
        await wa.close()
        f, skipped = await recv_until(wb, is_type("presence.update"))
        assert (f["user_id"], f["status"]) == (a, "offline")
        assert f["last_seen"] >= t_close - 5000
        assert [x for x in skipped if x["type"] == "presence.update"] == []
        assert [x for x in await quiet(wd) if x["type"] == "presence.update"] == []
        # asking again answers at once
        await send(wb, type="presence.subscribe", user_ids=[a])
        f, _ = await recv_until(wb, is_type("presence.update"))
        assert f["status"] == "offline" and f["last_seen"] >= t_close - 5000
        await wb.close()
        await wd.close()
    asyncio.run(body())


def test_a_crashed_gateways_users_go_offline_by_themselves(tmp_path):
    """kill -9 a gateway: nobody deregisters its users, their routes lapse after
    route-ttl-ms, and the watchers' gateway notices in its sweep."""
    crash = Gateway(tmp_path, k=0, slot=3, args=["--route-ttl-ms=2000"])
    try:
        watch = Gateway(tmp_path, k=1, slot=4, args=["--route-ttl-ms=2000"])
    except BaseException:
        crash.stop()
        raise
    try:
        async def body():
            import websockets
            from kchat_testkit.gateway import token
            a, b = uid(), uid()
            convo = create_conversation(a, [b])
            members_projected(convo, [a, b])
            wb = await websockets.connect(watch.url(), additional_headers={
                "Authorization": "Bearer " + token(b)})
            wa = await websockets.connect(crash.url(), additional_headers={
                "Authorization": "Bearer " + token(a)})
            await wait_routes([(a, 3)])
            await send(wb, type="presence.subscribe", user_ids=[a])
            f, _ = await recv_until(wb, is_type("presence.update"))
            assert f["status"] == "online"
            crash.proc.send_signal(signal.SIGKILL)
            crash.proc.wait()
            f, _ = await recv_until(wb, is_type("presence.update"), timeout=20)
            assert (f["user_id"], f["status"]) == (a, "offline")
            await wb.close()
            try:
                await wa.close()
            except Exception:
                pass
        asyncio.run(body())
    finally:
        crash.stop()
        assert watch.stop() == 0


def test_sync_after_a_reconnect_misses_nothing_and_doubles_nothing():
    """B drops off; A keeps sending, also while B reconnects and syncs. B ends with every
    message exactly once: live deliveries first, backfill from the read model for the gap,
    the ones it got live skipped, and sync.complete saying up to which seq_no."""
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa, wb = await connect(a, 0), await connect(b, 1)
        await wait_routes([(a, 0), (b, 1)])
        got = {}

        async def send_n(start, n):
            for i in range(start, start + n):
                await send(wa, type="message.send", convo_id=convo, client_msg_id=f"s{i}",
                           content=f"m{i}")
                await recv_until(wa, is_type("ack"))

        await send_n(0, 5)
        for f in await collect(wb, is_type("message.create"), 5):
            got[f["seq_no"]] = f
        await wb.close()
        await send_n(5, 15)  # while B is away
        wb = await connect(b, 2)  # back, on another gateway
        await wait_routes([(b, 2)])
        sender = asyncio.create_task(send_n(20, 15))  # and while B syncs
        frames = []
        last = max(got)
        # a client syncs from the end of what it holds without a gap, until it holds all
        while True:
            await send(wb, type="sync", convo_id=convo, since_seq=last)
            while True:
                f = await recv_json(wb, 30)
                frames.append(f)
                if f["type"] == "sync.complete":
                    break
            for x in frames:
                if x["type"] == "message.create":
                    assert x["seq_no"] not in got, f"seq {x['seq_no']} sent twice"
                    got[x["seq_no"]] = x
            frames.clear()
            while last + 1 in got:
                last += 1
            if f["up_to_seq"] >= 20 and last >= 20 and not f["more"]:
                break
            await asyncio.sleep(0.2)  # the projector may still be behind: sync again
        await sender
        # the rest arrives live; nothing twice
        while len(got) < 35:
            x = await recv_json(wb, 30)
            if x["type"] == "message.create":
                assert x["seq_no"] not in got, f"seq {x['seq_no']} sent twice"
                got[x["seq_no"]] = x
        assert sorted(got) == list(range(1, 36))
        assert all(got[s]["content"] == f"m{s - 1}" for s in got)
        assert [x for x in await quiet(wb) if x["type"] == "message.create"] == []
        backfilled = [s for s in got if got[s].get("backfill")]
        assert backfilled and all(6 <= s <= 35 for s in backfilled)
        await wa.close()
        await wb.close()
    asyncio.run(body())


def test_sync_of_a_conversation_the_user_is_not_in_is_refused():
    async def body():
        a, b, x = uid(), uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wx = await connect(x, 0)
        await send(wx, type="sync", convo_id=convo, since_seq=0)
        f, _ = await recv_until(wx, is_type("error"))
        assert f["error"]["code"] == "not_member" and f["in_reply_to"] == "sync"
        await wx.close()
    asyncio.run(body())


def test_the_subscriber_reconnects_and_subscribes_again():
    """Redis drops every pub/sub connection (CLIENT KILL TYPE pubsub): each gateway's
    subscriber reconnects and subscribes to its channels again, so typing flows again."""
    async def body():
        a, b = uid(), uid()
        convo = create_conversation(a, [b])
        members_projected(convo, [a, b])
        wa, wb = await connect(a, 0), await connect(b, 1)
        await wait_routes([(a, 0), (b, 1)])
        killed = redis_client().execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1
        # what is published while a subscriber reconnects is lost (pub/sub): retry a while
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "typing never came through again"
            await send(wa, type="typing.stop", convo_id=convo)
            await send(wa, type="typing.start", convo_id=convo)
            got = [f for f in await quiet(wb, 0.5) if f["type"] == "typing" and
                   f["state"] == "start"]
            if got:
                break
        await wa.close()
        await wb.close()
    asyncio.run(body())
