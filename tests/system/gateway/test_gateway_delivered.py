"""Delivery marks that outlive the socket: a message that reaches a socket of a recipient
(live, or in a sync's backfill) moves the recipient's mark in Postgres (`delivered`), written
by the gateways once per tick; the conversation's receipts carry it as delivered_seq, so the
sender's double ticks come back after a reload. Never for the sender's own messages, never
for a member who was not connected."""
import asyncio

from kchat_testkit.api import User
from kchat_testkit.gateway import connect, recv_until, send, wait_routes
from kchat_testkit.http import wait_until
from kchat_testkit.stack import psql


def marks(convo):
    rows = psql(f"SELECT user_id, delivered_seq FROM delivered WHERE convo_id = '{convo}'")
    return {user: int(seq) for user, seq in rows}


def test_delivery_marks_are_kept_and_served_as_receipts():
    ann, bob, cat = User(), User(), User()
    convo = ann.post("/conversations", {"title": "ticks",
                                        "members": [bob.id, cat.id]}).json["id"]

    async def body():
        wa, wb = await connect(ann.id, 0), await connect(bob.id, 1)
        await wait_routes([(ann.id, 0), (bob.id, 1)])
        for i in range(3):
            await send(wa, type="message.send", convo_id=convo, client_msg_id=f"t-{i}",
                       content=f"hello {i}")
            await recv_until(wa, lambda f: f["type"] == "ack")
            await recv_until(wb, lambda f: f["type"] == "message.create" and f["seq_no"] == i + 1)
        # bob's sockets got all three; cat was not connected; ann's own are not marked
        wait_until(lambda: marks(convo) == {bob.id: 3}, "bob's mark at 3", timeout=30)
        # the receipts of the conversation say it, on both list paths and the single one
        def receipts_ok():
            one = ann.get(f"/conversations/{convo}").json["receipts"]
            listed = [c for c in ann.get("/conversations").json["conversations"]
                      if c["id"] == convo][0]["receipts"]
            return one == listed and one.get(bob.id, {}).get("delivered_seq") == 3
        wait_until(receipts_ok, "bob's delivered_seq in the receipts", timeout=30)
        assert cat.id not in ann.get(f"/conversations/{convo}").json["receipts"]
        # and the counts of the last message (its sender, ann, included)
        def counts():
            one = ann.get(f"/conversations/{convo}").json["receipt_counts"]
            listed = [c for c in ann.get("/conversations").json["conversations"]
                      if c["id"] == convo][0]["receipt_counts"]
            assert one == listed, (one, listed)
            return one
        assert counts() == {"read": 1, "delivered": 2}
        # cat catches up with a sync: delivered now
        wc = await connect(cat.id, 2)
        await send(wc, type="sync", convo_id=convo, since_seq=0)
        await recv_until(wc, lambda f: f["type"] == "sync.complete")
        wait_until(lambda: marks(convo) == {bob.id: 3, cat.id: 3}, "cat's mark at 3",
                   timeout=30)
        wait_until(lambda: counts() == {"read": 1, "delivered": 3}, "three got it", timeout=30)
        # reading implies delivery: bob reads 3, and the receipt says both
        await send(wb, type="message.read", convo_id=convo, seq_no=3)
        wait_until(lambda: ann.get(f"/conversations/{convo}").json["receipts"].get(bob.id)
                   == {"read_seq": 3, "delivered_seq": 3}, "bob's receipt", timeout=30)
        assert counts() == {"read": 2, "delivered": 3}
        # a mark never moves back
        psql(f"UPDATE delivered SET delivered_seq = 9 WHERE convo_id = '{convo}' "
             f"AND user_id = '{cat.id}'")
        await send(wa, type="message.send", convo_id=convo, client_msg_id="t-3", content="4")
        await recv_until(wc, lambda f: f["type"] == "message.create" and f["seq_no"] == 4)
        wait_until(lambda: marks(convo).get(bob.id) == 4, "bob's mark at 4", timeout=30)
        assert marks(convo)[cat.id] == 9
        for ws in (wa, wb, wc):
            await ws.close()
    asyncio.run(body())
