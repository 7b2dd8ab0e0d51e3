"""Reactions over the socket (message.react): the processor decides (members only, one
reaction per member per message, a message of the edit window that is not deleted), every
member device on every gateway gets message.reaction with the message's whole set, the
Postgres read model holds each member's reaction, and a sync's backfill carries them."""
import asyncio

import jsonschema

from kchat_testkit.api import User
from kchat_testkit.gateway import connect, quiet, recv_until, send, spec_payload, wait_routes
from kchat_testkit.http import wait_until
from kchat_testkit.stack import psql

THUMBS, HEART = "\U0001F44D", "\u2764\ufe0f"
REACTION = spec_payload("MessageReaction")
CREATE = spec_payload("MessageCreate")


def is_type(t):
    return lambda f: f["type"] == t


async def refused(ws, code, **frame):
    await send(ws, type="message.react", **frame)
    f, _ = await recv_until(ws, is_type("error"))
    assert (f["error"]["code"], f["in_reply_to"]) == (code, "message.react"), f


def stored(convo):
    """rm.reactions of the conversation: {(seq_no, user_id): emoji}."""
    rows = psql(f"SELECT seq_no, user_id, emoji FROM rm.reactions WHERE convo_id = '{convo}'")
    return {(int(seq), user): emoji for seq, user, emoji in rows}


def test_reactions_reach_every_device_and_the_read_model():
    ann, bob, eve = User(), User(), User()
    convo = ann.post("/conversations", {"title": "reactions", "members": [bob.id]}).json["id"]

    async def body():
        wa, wb, wb2 = await connect(ann.id, 0), await connect(bob.id, 1), await connect(bob.id, 2)
        we = await connect(eve.id, 1)
        await wait_routes([(ann.id, 0), (bob.id, 1), (bob.id, 2), (eve.id, 1)])
        for i in range(2):
            await send(wa, type="message.send", convo_id=convo, client_msg_id=f"r-{i}",
                       content=f"message {i}")
            ack, _ = await recv_until(wa, is_type("ack"))
            assert ack["status"] == "ok" and ack["seq_no"] == i + 1

        async def everyone_sees(who, emoji, previous, reactions, seq=1):
            for ws in (wa, wb, wb2):
                f, _ = await recv_until(ws, is_type("message.reaction"))
                jsonschema.validate(f, REACTION)
                assert (f["convo_id"], f["seq_no"], f["user_id"], f["emoji"], f["previous"],
                        f["reactions"]) == (convo, seq, who, emoji, previous, reactions), f

        await send(wa, type="message.react", convo_id=convo, seq_no=1, emoji=THUMBS)
        await everyone_sees(ann.id, THUMBS, None, [{"emoji": THUMBS, "count": 1}])
        await send(wb, type="message.react", convo_id=convo, seq_no=1, emoji=THUMBS)
        await everyone_sees(bob.id, THUMBS, None, [{"emoji": THUMBS, "count": 2}])
        # one per member: a new one replaces bob's; equal counts in the emoji's byte order
        await send(wb2, type="message.react", convo_id=convo, seq_no=1, emoji=HEART)
        await everyone_sees(bob.id, HEART, THUMBS,
                            [{"emoji": HEART, "count": 1}, {"emoji": THUMBS, "count": 1}])
        # the same again: answered, nothing changes
        await send(wb, type="message.react", convo_id=convo, seq_no=1, emoji=HEART)
        await everyone_sees(bob.id, HEART, HEART,
                            [{"emoji": HEART, "count": 1}, {"emoji": THUMBS, "count": 1}])
        # null removes
        await send(wb, type="message.react", convo_id=convo, seq_no=1, emoji=None)
        await everyone_sees(bob.id, None, HEART, [{"emoji": THUMBS, "count": 1}])
        # refusals, each in reply to the frame; the connection stays
        await refused(we, "not_member", convo_id=convo, seq_no=1, emoji=THUMBS)
        await refused(wa, "no_such_message", convo_id=convo, seq_no=99, emoji=THUMBS)
        for bad in ["", "two words", "x" * 65, "a" * 17, 7, ["x"]]:
            await refused(wa, "invalid", convo_id=convo, seq_no=1, emoji=bad)
        await send(wa, type="message.react", convo_id=convo, seq_no=1)  # emoji missing
        f, _ = await recv_until(wa, is_type("error"))
        assert f["error"]["code"] == "invalid" and "emoji" in f["error"]["message"]
        # a deleted message loses its reactions and takes no more
        await send(wb, type="message.react", convo_id=convo, seq_no=2, emoji=HEART)
        await everyone_sees(bob.id, HEART, None, [{"emoji": HEART, "count": 1}], seq=2)
        await send(wa, type="message.delete", convo_id=convo, seq_no=2)
        await recv_until(wa, is_type("message.delete"))
        await refused(wb, "deleted", convo_id=convo, seq_no=2, emoji=THUMBS)
        assert [f for f in await quiet(we) if f["type"].startswith("message.")] == []

        # the Postgres read model: ann's reaction to 1, nothing for the deleted 2
        wait_until(lambda: stored(convo) == {(1, ann.id): THUMBS},
                   "rm.reactions to hold ann's reaction only", timeout=30)

        # a sync's backfill carries each message's reactions, and the caller's own
        for ws, mine in ((wa, THUMBS), (wb, None)):
            await send(ws, type="sync", convo_id=convo, since_seq=0)
            frames = []
            while True:
                f, _ = await recv_until(ws, lambda f: f["type"] in ("message.create",
                                                                    "sync.complete"))
                if f["type"] == "sync.complete":
                    break
                frames.append(f)
            by_seq = {f["seq_no"]: f for f in frames}
            if 1 in by_seq:  # not skipped as already sent live on this socket
                jsonschema.validate(by_seq[1], CREATE)
                assert by_seq[1]["reactions"] == [{"emoji": THUMBS, "count": 1}]
                assert by_seq[1].get("my_reaction") == mine
        wb3 = await connect(bob.id, 0)
        await send(wb3, type="sync", convo_id=convo, since_seq=0)
        first, _ = await recv_until(wb3, lambda f: f["type"] == "message.create"
                                    and f["seq_no"] == 1)
        assert first["reactions"] == [{"emoji": THUMBS, "count": 1}]
        assert "my_reaction" not in first
        second, _ = await recv_until(wb3, lambda f: f["type"] == "message.create"
                                     and f["seq_no"] == 2)
        assert second["reactions"] == [] and second["deleted"] is True
        for ws in (wa, wb, wb2, we, wb3):
            await ws.close()
    asyncio.run(body())
