"""What a conversation shows (read and delivery receipts, roles, topic, history, the departed
member's bound) survives kill -9 of every daemon, one after the other, and the conversation
goes on from where it was: read receipts come from the event log and its read models,
delivery marks from Postgres, not from any daemon's memory."""
import asyncio
import subprocess

from kchat_testkit.api import User, send_all, wait_last_seq
from kchat_testkit.gateway import connect, recv_until, send
from kchat_testkit.http import wait_until
from kchat_testkit.stack import ROOT

STACK = [str(ROOT / "scripts" / "stack.sh")]


def view(user, convo):
    """The conversation as the user sees it, alone and in the list (which Redis serves)."""
    one = user.get(f"/conversations/{convo}")
    assert one.status == 200, one
    listed = [c for c in user.get("/conversations").json["conversations"] if c["id"] == convo]
    assert len(listed) == 1
    keep = ("receipts", "roles", "topic", "title", "last_seq", "members")
    return {k: one.json[k] for k in keep}, {k: listed[0][k] for k in keep}


def test_receipts_roles_and_history_survive_kill_9_of_every_daemon(commands):
    ann, bob, cat, dan = User(), User(), User(), User()
    convo = ann.post("/conversations", {"title": "kept", "members": [bob.id, cat.id, dan.id]})
    assert convo.status == 201, convo
    convo = convo.json["id"]
    send_all(commands, convo, ann, ["one", "two", "three"])
    wait_last_seq(ann, convo, 3)

    async def catch_up():  # bob's socket gets all three (a sync): delivered, not all read
        ws = await connect(bob.id, 0)
        await send(ws, type="sync", convo_id=convo, since_seq=0)
        await recv_until(ws, lambda f: f["type"] == "sync.complete")
        await ws.close()
    asyncio.run(catch_up())
    assert bob.post(f"/conversations/{convo}/read", {"seq_no": 2}).status == 200
    assert cat.post(f"/conversations/{convo}/read", {"seq_no": 3}).status == 200
    assert ann.patch(f"/conversations/{convo}/members/{bob.id}", {"role": "admin"}).status == 200
    assert bob.patch(f"/conversations/{convo}", {"topic": "on call"}).status == 200
    assert dan.delete(f"/conversations/{convo}/members/{dan.id}").status == 204
    before = wait_until(lambda: (lambda v: v if v[0] == v[1] and v[0]["receipts"].get(
        bob.id, {}).get("delivered_seq") == 3 else None)(view(ann, convo)),
                        "the list and the conversation to agree, bob's delivery mark in")
    assert before[0]["receipts"] == {ann.id: {"read_seq": 3, "delivered_seq": 3},
                                     bob.id: {"read_seq": 2, "delivered_seq": 3},
                                     cat.id: {"read_seq": 3, "delivered_seq": 3}}
    assert before[0]["roles"] == {ann.id: "owner", bob.id: "admin", cat.id: "member"}

    names = subprocess.run(STACK + ["daemons"], check=True, capture_output=True,
                           text=True).stdout.split("\n")
    daemons = [line.split("\t")[0] for line in names if line.strip()]
    assert {"processor", "projector", "api", "gateway"} <= set(daemons)
    for d in daemons:
        subprocess.run(STACK + ["kill", d], check=True, capture_output=True)

    # the same after, from each member's side, on both paths
    for u in (ann, bob, cat):
        after = wait_until(lambda u=u: (lambda v: v if v[0] == v[1] else None)(view(u, convo)),
                           "the list and the conversation to agree after the restarts")
        assert after[0] == before[0], (u.name, after[0], before[0])
    history = wait_until(lambda: (lambda r: r if r.status == 200 else None)(
        dan.get(f"/conversations/{convo}/messages")), "dan's history")
    assert ([m["content"] for m in history.json["messages"]], history.json["left_seq"]) == (
        ["one", "two", "three"], 3)
    # and it goes on: the next message is number 4, receipts move on
    send_all(commands, convo, cat, ["four"])
    wait_last_seq(ann, convo, 4)
    assert bob.post(f"/conversations/{convo}/read", {"seq_no": 4}).status == 200
    got = wait_until(lambda: (lambda v: v if v[0]["receipts"].get(bob.id, {}).get("read_seq")
                              == 4 and v[0] == v[1] else None)(view(ann, convo)),
                     "bob's new read position")
    assert got[0]["receipts"] == {ann.id: {"read_seq": 3, "delivered_seq": 3},
                                  bob.id: {"read_seq": 4, "delivered_seq": 4},
                                  cat.id: {"read_seq": 4, "delivered_seq": 4}}
