"""Editing and deleting a message over the socket (message.edit, message.delete) and over
REST (PATCH and DELETE /conversations/{id}/messages/{seq}): the processor decides (the author
only), every member device on every gateway gets message.update or message.delete, and both
read models and search show the change."""
import asyncio
import urllib.parse

from kchat_testkit.api import User, call
from kchat_testkit.gateway import connect, quiet, recv_until, send, wait_routes
from kchat_testkit.http import wait_until
from kchat_testkit.stack import psql


def is_type(t):
    return lambda f: f["type"] == t


def rest(user, method, path, body=None):
    return call(method, path, body, token=user.token)


def history(user, convo):
    r = user.get(f"/conversations/{convo}/messages?limit=50")
    assert r.status == 200, r
    return {m["seq_no"]: m for m in r.json["messages"]}


def test_edit_and_delete_over_the_socket_reach_every_device_and_both_models():
    ann, bob, eve = User(), User(), User()
    convo = ann.post("/conversations", {"title": "edits", "members": [bob.id]}).json["id"]

    async def body():
        wa, wb, wb2 = await connect(ann.id, 0), await connect(bob.id, 1), await connect(bob.id, 2)
        we = await connect(eve.id, 1)
        await wait_routes([(ann.id, 0), (bob.id, 1), (bob.id, 2), (eve.id, 1)])
        for i, text in enumerate(["first draft", "keep me", "regret this"]):
            await send(wa, type="message.send", convo_id=convo, client_msg_id=f"e-{i}",
                       content=text)
            ack, _ = await recv_until(wa, is_type("ack"))
            assert ack["status"] == "ok" and ack["seq_no"] == i + 1
        # the author edits 1: every member device gets the update, the editor's own too
        await send(wa, type="message.edit", convo_id=convo, seq_no=1, content="final text")
        for ws in (wa, wb, wb2):
            f, _ = await recv_until(ws, is_type("message.update"))
            assert (f["convo_id"], f["seq_no"], f["content"], f["editor_id"]) == (
                convo, 1, "final text", ann.id)
        # someone else's message: refused with the reason, in reply to the frame
        await send(wb, type="message.edit", convo_id=convo, seq_no=2, content="bob was here")
        f, _ = await recv_until(wb, is_type("error"))
        assert (f["error"]["code"], f["in_reply_to"]) == ("not_author", "message.edit")
        await send(wb, type="message.delete", convo_id=convo, seq_no=2)
        f, _ = await recv_until(wb, is_type("error"))
        assert (f["error"]["code"], f["in_reply_to"]) == ("not_author", "message.delete")
        # not a member
        await send(we, type="message.delete", convo_id=convo, seq_no=2)
        f, _ = await recv_until(we, is_type("error"))
        assert f["error"]["code"] == "not_member"
        # bad frames: each an error, the connection stays
        for frame, code in [({"convo_id": convo, "seq_no": 0, "content": "x"}, "invalid"),
                            ({"convo_id": convo, "seq_no": 1, "content": ""}, "invalid"),
                            ({"convo_id": convo, "seq_no": 1}, "invalid"),
                            ({"convo_id": convo, "seq_no": 99, "content": "x"},
                             "no_such_message")]:
            await send(wa, type="message.edit", **frame)
            f, _ = await recv_until(wa, is_type("error"))
            assert f["error"]["code"] == code, (frame, f)
        # the author deletes 3
        await send(wa, type="message.delete", convo_id=convo, seq_no=3)
        for ws in (wa, wb, wb2):
            f, _ = await recv_until(ws, is_type("message.delete"))
            assert (f["convo_id"], f["seq_no"], f["deleted_by"]) == (convo, 3, ann.id)
        # twice is refused
        await send(wa, type="message.delete", convo_id=convo, seq_no=3)
        f, _ = await recv_until(wa, is_type("error"))
        assert f["error"]["code"] == "deleted"
        assert [f for f in await quiet(we) if f["type"].startswith("message.")] == []
        for ws in (wa, wb, wb2, we):
            await ws.close()
    asyncio.run(body())

    def applied():
        h = history(bob, convo)
        return len(h) == 3 and h[3]["deleted_at"] and h[1]["edited_at"] and h
    h = wait_until(applied, "the edit and the delete in history")
    assert (h[1]["content"], h[2]["content"], h[3]["content"]) == ("final text", "keep me", "")
    assert h[2]["edited_at"] is None and h[2]["deleted_at"] is None
    rows = psql("SELECT seq_no, content, edited_at IS NOT NULL, deleted_at IS NOT NULL "
                f"FROM rm.messages WHERE convo_id = '{convo}' ORDER BY seq_no")
    assert rows == [["1", "final text", "t", "f"], ["2", "keep me", "f", "f"],
                    ["3", "", "f", "t"]]
    # search finds the new text, not the old nor the deleted
    def found(q):
        r = bob.get("/search?q=" + urllib.parse.quote(q))
        assert r.status == 200, r
        return [m["seq_no"] for m in r.json["messages"] if m["convo_id"] == convo]
    assert wait_until(lambda: found("final"), "the edited text searchable") == [1]
    assert found("draft") == [] and found("regret") == []


def test_edit_and_delete_over_rest():
    ann, bob, eve = User(), User(), User()
    convo = ann.post("/conversations", {"title": "rest edits", "members": [bob.id]}).json["id"]

    async def body():
        wa = await connect(ann.id, 0)
        await wait_routes([(ann.id, 0)])
        for i in range(2):
            await send(wa, type="message.send", convo_id=convo, client_msg_id=f"r-{i}",
                       content=f"rest message {i}")
            await recv_until(wa, is_type("ack"))
        await wa.close()
    asyncio.run(body())
    path = f"/conversations/{convo}/messages"
    r = rest(ann, "PATCH", f"{path}/1", {"content": "rest edited"})
    assert r.status == 200, r
    assert (r.json["seq_no"], r.json["content"]) == (1, "rest edited") and r.json["edited_at"]
    assert r.json["edit_count"] == 1
    r = rest(ann, "PATCH", f"{path}/1", {"content": "rest edited again"})
    assert (r.status, r.json["content"], r.json["edit_count"]) == (200, "rest edited again", 2), r
    # the answer is read from Postgres; the history page here from the Redis tail
    page = ann.get(f"{path}?limit=50")
    assert page.status == 200 and page.json["messages"][0]["edit_count"] == 2, page
    r = rest(ann, "DELETE", f"{path}/2")
    assert r.status == 200, r
    assert (r.json["seq_no"], r.json["content"]) == (2, "") and r.json["deleted_at"]
    cases = [
        (bob, "PATCH", f"{path}/1", {"content": "x"}, 403, "not_author"),
        (bob, "DELETE", f"{path}/1", None, 403, "not_author"),
        (eve, "PATCH", f"{path}/1", {"content": "x"}, 404, "not_found"),
        (ann, "DELETE", f"{path}/2", None, 409, "deleted"),
        (ann, "PATCH", f"{path}/2", {"content": "x"}, 409, "deleted"),
        (ann, "PATCH", f"{path}/9", {"content": "x"}, 404, "not_found"),
        (ann, "PATCH", f"{path}/1", {"content": ""}, 400, "invalid_request"),
        (ann, "PATCH", f"{path}/1", {"content": 5}, 400, "invalid_request"),
        (ann, "PATCH", f"{path}/0", {"content": "x"}, 404, "not_found"),
        (ann, "PATCH", f"{path}/01", {"content": "x"}, 404, "not_found"),
        (ann, "PATCH", f"{path}/abc", {"content": "x"}, 404, "not_found"),
        (ann, "GET", f"{path}/1", None, 405, "method_not_allowed"),
    ]
    for who, method, p, body_, status, code in cases:
        r = rest(who, method, p, body_)
        assert (r.status, r.code) == (status, code), (method, p, body_, r)
    assert history(ann, convo)[1]["content"] == "rest edited again"


def test_a_command_kafka_refuses_is_answered_and_the_socket_stays(tmp_path, brokers):
    """The producer reports only failures: a message.send whose record the broker refuses
    (larger than its topic allows) gets an ack with error unavailable, a message.edit an
    error in reply to it, and the connection serves on."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from kchat_testkit.gateway import Gateway, token
    import uuid as _uuid
    import websockets
    topic = f"chat.commands.small.{_uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": brokers})
    admin.create_topics([NewTopic(topic, 3, 1, config={"max.message.bytes": "1000"})])[
        topic].result(30)
    gw = Gateway(tmp_path, args=[f"--commands-topic={topic}"])
    try:
        async def body():
            ann = User()
            ws = await websockets.connect(gw.url(), additional_headers={
                "Authorization": "Bearer " + token(ann.id)}, max_size=None)
            big = "x" * 4000
            await send(ws, type="message.send", convo_id="c_refused", client_msg_id="big-1",
                       content=big)
            ack, _ = await recv_until(ws, is_type("ack"), timeout=60)
            assert (ack["client_msg_id"], ack["status"], ack["error"]["code"]) == (
                "big-1", "error", "unavailable"), ack
            await send(ws, type="message.edit", convo_id="c_refused", seq_no=1, content=big)
            f, _ = await recv_until(ws, is_type("error"), timeout=60)
            assert (f["error"]["code"], f["in_reply_to"]) == ("unavailable", "message.edit"), f
            # still served: a bad frame gets its error at once
            await send(ws, type="message.read", convo_id="c_refused")
            f, _ = await recv_until(ws, is_type("error"))
            assert f["error"]["code"] == "invalid"
            await ws.close()
        asyncio.run(body())
        assert gw.metric("kchat_gateway_produce_errors_total") >= 2
    finally:
        gw.stop()
        admin.delete_topics([topic])


def test_replies_name_an_earlier_message_everywhere():
    """message.send with reply_to: the processor checks it names an earlier message, every
    member device gets it in message.create, history and the sync backfill carry it."""
    ann, bob = User(), User()
    convo = ann.post("/conversations", {"title": "replies", "members": [bob.id]}).json["id"]

    async def body():
        wa, wb = await connect(ann.id, 0), await connect(bob.id, 2)
        await wait_routes([(ann.id, 0), (bob.id, 2)])
        await send(wa, type="message.send", convo_id=convo, client_msg_id="q-1",
                   content="a question")
        ack, _ = await recv_until(wa, is_type("ack"))
        assert ack["seq_no"] == 1
        await send(wb, type="message.send", convo_id=convo, client_msg_id="a-1",
                   content="the answer", reply_to=1)
        ack, _ = await recv_until(wb, is_type("ack"))
        assert (ack["status"], ack["seq_no"]) == ("ok", 2)
        f, _ = await recv_until(wa, lambda f: f["type"] == "message.create" and
                                f["seq_no"] == 2)  # (the sending socket has its ack)
        assert (f["reply_to"], f["content"]) == (1, "the answer")
        # not an earlier message: refused in the ack, nothing numbered
        for rt in (3, 99):  # the last message is 2
            await send(wb, type="message.send", convo_id=convo, client_msg_id=f"bad-{rt}",
                       content="to the future", reply_to=rt)
            ack, _ = await recv_until(wb, is_type("ack"))
            assert (ack["status"], ack["error"]["code"]) == ("error", "no_such_message"), ack
        # a malformed one is the gateway's to refuse, in the message's own ack
        await send(wb, type="message.send", convo_id=convo, client_msg_id="bad-0",
                   content="x", reply_to=0)
        ack, _ = await recv_until(wb, is_type("ack"))
        assert (ack["client_msg_id"], ack["status"], ack["error"]["code"]) == (
            "bad-0", "error", "invalid"), ack
        assert "reply_to" in ack["error"]["message"]
        await send(wa, type="message.send", convo_id=convo, client_msg_id="q-2",
                   content="thanks", reply_to=2)
        ack, _ = await recv_until(wa, is_type("ack"))
        assert ack["seq_no"] == 3
        # the backfill of a sync (on a socket that got nothing live) says it too, once the
        # read model has the messages
        wait_until(lambda: len(history(ann, convo)) == 3, "the three messages in history")
        ws = await connect(bob.id, 1)
        await send(ws, type="sync", convo_id=convo, since_seq=0)
        got = {}
        while True:
            f, _ = await recv_until(ws, lambda f: f["type"] in ("message.create",
                                                                "sync.complete"))
            if f["type"] == "sync.complete":
                break
            got[f["seq_no"]] = f.get("reply_to")
        assert got == {1: None, 2: 1, 3: 2}
        for w in (wa, wb, ws):
            await w.close()
    asyncio.run(body())
    h = history(bob, convo)
    assert {s: m["reply_to"] for s, m in h.items()} == {1: None, 2: 1, 3: 2}
