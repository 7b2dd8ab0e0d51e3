"""Running a conversation over the socket (conversation.update, member.remove, member.role):
the processor decides by role (the creator owns it; owners and admins manage; anyone
leaves), every member device on every gateway hears of it as conversation.update, and a
removed member hears nothing more on any of the three gateways and reads the history only
up to where they left."""
import asyncio
import time

import jsonschema

from kchat_testkit.api import User
from kchat_testkit.gateway import (connect, quiet, recv_until, redis_client, send, spec_payload,
                                   wait_routes)
from kchat_testkit.http import wait_until

SEEN = []  # every conversation.update received, checked against docs/asyncapi.yaml


def is_type(t):
    return lambda f: f["type"] == t


def change(kind):
    def pred(f):
        if f["type"] == "conversation.update":
            SEEN.append(f)
        return f["type"] == "conversation.update" and f["change"] == kind
    return pred


def left_redis(convo, user, timeout=30):
    """Waits until the projector has taken user out of the Redis members (which typing
    reads)."""
    r = redis_client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gen = r.get("kchat:rm:gen")
        if gen and user not in r.smembers(f"kchat:rm:{gen}:members:{convo}"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{user} still a member of {convo} in Redis")


async def refused(ws, frame_type, code, **frame):
    await send(ws, type=frame_type, **frame)
    f, _ = await recv_until(ws, is_type("error"))
    assert (f["error"]["code"], f["in_reply_to"]) == (code, frame_type), f


def test_roles_rename_remove_and_leave_over_the_socket():
    ann, bob, cat = User(), User(), User()
    convo = ann.post("/conversations", {"title": "ops", "members": [bob.id, cat.id]}).json["id"]

    async def body():
        wa, wb = await connect(ann.id, 0), await connect(bob.id, 1)
        cats = [await connect(cat.id, i) for i in range(3)]
        await wait_routes([(ann.id, 0), (bob.id, 1)] + [(cat.id, i) for i in range(3)])
        everyone = [wa, wb] + cats

        # a plain member manages nothing
        await refused(wb, "conversation.update", "not_allowed", convo_id=convo, title="mine")
        await refused(wb, "member.role", "not_allowed", convo_id=convo, user_id=bob.id,
                      role="admin")
        await refused(wb, "member.remove", "not_allowed", convo_id=convo, user_id=cat.id)
        # the owner makes bob an admin: every device hears of it
        await send(wa, type="member.role", convo_id=convo, user_id=bob.id, role="admin")
        for ws in everyone:
            f, _ = await recv_until(ws, change("role"))
            assert (f["user_id"], f["role"], f["actor_id"]) == (bob.id, "admin", ann.id)
        # an admin renames and sets the topic
        await send(wb, type="conversation.update", convo_id=convo, title="Ops \u00e9",
                   topic="on call")
        for ws in everyone:
            f, _ = await recv_until(ws, change("updated"))
            assert (f["title"], f["topic"], f["actor_id"]) == ("Ops \u00e9", "on call", bob.id)
        # but removes no owner and makes no owner
        await refused(wb, "member.remove", "not_allowed", convo_id=convo, user_id=ann.id)
        await refused(wb, "member.role", "not_allowed", convo_id=convo, user_id=cat.id,
                      role="owner")
        await refused(wb, "member.role", "no_such_member", convo_id=convo,
                      user_id="u_nobody", role="member")
        # a message cat still reads, then bob removes cat
        await send(wa, type="message.send", convo_id=convo, client_msg_id="r-1",
                   content="before")
        ack, _ = await recv_until(wa, is_type("ack"))
        assert ack["status"] == "ok"
        for ws in cats:
            await recv_until(ws, is_type("message.create"))
        await send(wb, type="member.remove", convo_id=convo, user_id=cat.id)
        for ws in everyone:  # those removed hear of it too, on each of their gateways
            f, _ = await recv_until(ws, change("members_removed"))
            assert (f["members"], f["left_seq"], f["actor_id"]) == ([cat.id], ack["seq_no"],
                                                                    bob.id)
            assert "promoted" not in f
        # from now on nothing reaches cat, on any gateway
        await send(wa, type="message.send", convo_id=convo, client_msg_id="r-2",
                   content="after")
        ack2, _ = await recv_until(wa, is_type("ack"))
        assert ack2["status"] == "ok"
        f, _ = await recv_until(wb, is_type("message.create"))
        assert f["content"] == "after"
        left_redis(convo, cat.id)
        await send(wb, type="typing.start", convo_id=convo)
        await recv_until(wa, is_type("typing"))
        for ws in cats:
            assert [f for f in await quiet(ws) if f.get("convo_id") == convo] == []
        await send(cats[0], type="message.send", convo_id=convo, client_msg_id="c-1",
                   content="let me in")
        f, _ = await recv_until(cats[0], is_type("ack"))
        assert (f["status"], f["error"]["code"]) == ("error", "not_member")
        # the last owner leaves: the oldest admin, bob, becomes owner
        await refused(wa, "member.role", "last_owner", convo_id=convo, user_id=ann.id,
                      role="member")
        await send(wa, type="member.remove", convo_id=convo, user_id=ann.id)
        for ws in (wa, wb):
            f, _ = await recv_until(ws, change("members_removed"))
            assert (f["members"], f["promoted"]) == ([ann.id], bob.id)
        await refused(wa, "conversation.update", "not_member", convo_id=convo, topic="x")
        # bad frames: an error each, the socket stays
        for frame, code in [({"convo_id": convo}, "invalid"),
                            ({"convo_id": convo, "title": ""}, "invalid"),
                            ({"convo_id": convo, "topic": "x" * 1025}, "invalid")]:
            await refused(wb, "conversation.update", code, **frame)
        await refused(wb, "member.role", "invalid", convo_id=convo, user_id=cat.id,
                      role="boss")
        # bob, the owner now, adds cat back (and checks that ids are users); cat hears of it
        await refused(wb, "member.add", "unknown_user", convo_id=convo,
                      user_ids=[cat.id, "u_nobody"])
        await send(wb, type="member.add", convo_id=convo, user_ids=[cat.id, cat.id])
        for ws in [wb] + cats:
            f, _ = await recv_until(ws, change("members_added"))
            assert (f["members"], f["actor_id"]) == ([cat.id], bob.id)
        await send(cats[1], type="member.remove", convo_id=convo, user_id=cat.id)
        for ws in [wb] + cats:
            f, _ = await recv_until(ws, change("members_removed"))
            assert (f["members"], f["actor_id"]) == ([cat.id], cat.id)
        await send(wb, type="message.send", convo_id=convo, client_msg_id="r-3",
                   content="after cat left again")
        ack3, _ = await recv_until(wb, is_type("ack"))
        assert (ack3["status"], ack3["seq_no"]) == ("ok", 3)
        await send(wb, type="conversation.update", convo_id=convo, topic="")
        f, _ = await recv_until(wb, change("updated"))
        assert (f["topic"], "title" in f) == ("", False)
        for ws in everyone:
            await ws.close()
    asyncio.run(body())

    # cat reads the history up to where they left, and nothing later
    r = wait_until(lambda: (lambda r: r if r.status == 200 and r.json.get("left_seq") == 2
                                      else None)(
        cat.get(f"/conversations/{convo}/messages?limit=50")), "cat's departure projected")
    # (added back and gone again, after "after": the second departure counts)
    assert [m["content"] for m in r.json["messages"]] == ["before", "after"]
    assert r.json["left_seq"] == 2
    assert cat.get(f"/conversations/{convo}/messages?since_seq=2").json["messages"] == []
    # bob, the owner now, sees the roles and the cleared topic (once projected: the frames
    # come from the processor, ahead of the read models)
    got = wait_until(lambda: (lambda r: r if r.status == 200 and r.json["topic"] == "" else None)(
        bob.get(f"/conversations/{convo}")), "the cleared topic in the read model")
    assert got.json["title"] == "Ops \u00e9"
    assert got.json["roles"] == {bob.id: "owner"}
    assert ann.get(f"/conversations/{convo}").status == 404
    # every conversation.update seen is what docs/asyncapi.yaml says
    schema = spec_payload("ConversationUpdate")
    assert {f["change"] for f in SEEN} >= {"role", "updated", "members_removed"}
    for f in SEEN:
        jsonschema.validate(f, schema)
