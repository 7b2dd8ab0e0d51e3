"""One direct conversation per pair: POST /conversations {kind: "direct", members: [other]}
answers the pair's conversation, 201 when it is made and 200 when it exists, also when both
users ask at once through two API replicas. The id is derived from the pair (computed here
independently of the C code), and the processor refuses any other id or any change of a
direct conversation's members."""
import base64
import hashlib
import json
import threading

from kchat_testkit.api import User, api_instance
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.stack import psql
from kchat_testkit.wire import body, command, events_of, send_message


def pair_id(a, b):
    """The rule of kc_id_direct: SHA-256 over a domain and the length-prefixed pair in byte
    order, its first 16 bytes as lowercase base32."""
    lo, hi = sorted([a.encode(), b.encode()])
    h = hashlib.sha256(b"kchat direct conversation v1\0" + bytes([len(lo)]) + lo
                       + bytes([len(hi)]) + hi).digest()
    return "d_" + base64.b32encode(h[:16]).decode().lower().rstrip("=")


def direct(user, other_id, base=None, **extra):
    body = {"kind": "direct", "members": [other_id], **extra}
    if base is None:
        return user.post("/conversations", body)
    status, _, raw = http_get(base + "/conversations", method="POST",
                              data=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json",
                                       "Authorization": f"Bearer {user.token}"})
    return status, json.loads(raw)


def test_the_pair_has_one_conversation(alice, bob):
    first = direct(alice, bob.id)
    assert first.status == 201, first
    c = first.json
    assert c["id"] == pair_id(alice.id, bob.id)
    assert c["kind"] == "direct" and c["title"] == ""
    assert sorted(c["members"]) == sorted([alice.id, bob.id])
    # asked again, by either of them: the same conversation, 200
    for u, other in [(alice, bob), (bob, alice), (alice, bob)]:
        again = direct(u, other.id)
        assert again.status == 200, again
        assert again.json["id"] == c["id"] and again.json["kind"] == "direct"
    # a group of the same two people is another conversation, and says so
    g = alice.post("/conversations", {"title": "us", "members": [bob.id]})
    assert g.status == 201 and g.json["kind"] == "group" and g.json["id"] != c["id"], g
    # both read paths of the list carry the kind (Redis first, Postgres when asked for it)
    kinds = {x["id"]: x["kind"] for x in bob.get("/conversations").json["conversations"]}
    assert kinds[c["id"]] == "direct" and kinds[g.json["id"]] == "group"
    assert psql("SELECT count(*) FROM rm.conversations WHERE convo_id = $$%s$$" % c["id"]) == [["1"]]


def test_a_direct_conversation_carries_messages(alice, commands):
    carol = User()
    c = direct(alice, carol.id).json
    commands.send(send_message(c["id"], carol.id, "dm-1", "hello in private"))
    commands.flush()

    def seen():
        r = alice.get(f"/conversations/{c['id']}/messages")
        return r.status == 200 and r.json["messages"]
    msgs = wait_until(seen, "the message in the direct conversation's history")
    assert [(m["seq_no"], m["content"]) for m in msgs] == [(1, "hello in private")]


def test_bad_direct_requests_are_refused(alice, bob):
    dave = User()
    cases = [
        ({"kind": "direct", "members": [alice.id]}, 400, "invalid_request"),  # oneself
        ({"kind": "direct", "members": []}, 400, "invalid_request"),
        ({"kind": "direct", "members": [bob.id, dave.id]}, 400, "too_many_members"),
        ({"kind": "direct"}, 400, "invalid_request"),
        ({"kind": "direct", "members": ["u_doesnotexist0000000000000000"]}, 400, "unknown_user"),
        ({"kind": "direct", "members": [bob.id], "title": 7}, 400, "invalid_request"),
        ({"kind": "dm", "members": [bob.id]}, 400, "invalid_request"),
        ({"kind": ["direct"], "members": [bob.id]}, 400, "invalid_request"),
        ({"members": [bob.id]}, 400, "invalid_request"),  # a group still needs its title
    ]
    for body, status, code in cases:
        r = alice.post("/conversations", body)
        assert (r.status, r.code) == (status, code), (body, r)
    # the members of a direct conversation do not change
    c = direct(alice, dave.id).json
    r = alice.post(f"/conversations/{c['id']}/members", {"members": [bob.id]})
    assert (r.status, r.code) == (409, "direct_conversation"), r
    assert sorted(alice.get(f"/conversations/{c['id']}").json["members"]) == sorted(
        [alice.id, dave.id])


def test_the_processor_refuses_a_forged_direct_id(brokers, commands):
    """A command straight to chat.commands (past the API) naming a pair's id for another pair
    is refused by the processor, the one place that decides."""
    x, y, eve = User(), User(), User()
    forged = pair_id(x.id, y.id)
    commands.send(command(forged, eve.id, "CreateConversation",
                          {"title": "", "members": [y.id]}, "api:test"))
    commands.flush()
    evs = events_of(brokers, forged, lambda got: len(got) >= 1)
    name, fields = body(evs[0])
    assert (name, fields["reason"]) == ("CommandRejected", "direct_conversation"), evs[0]
    assert psql("SELECT count(*) FROM rm.conversations WHERE convo_id = $$%s$$" % forged) == [["0"]]
    # the pair itself still gets it
    r = direct(y, x.id)
    assert r.status == 201 and r.json["id"] == forged, r


def test_two_replicas_racing_make_one_conversation():
    """Both users ask for their conversation at the same moment, one through each of two API
    replicas, for several pairs at once: each pair gets one conversation, made once."""
    p, base = api_instance()
    try:
        pairs = [(User(), User()) for _ in range(6)]
        results = {}

        def ask(i, who, other, where):
            r = direct(who, other.id, base=where)
            results[(i, who.id)] = (r.status, r.json) if where is None else r

        threads = []
        for i, (a, b) in enumerate(pairs):
            threads.append(threading.Thread(target=ask, args=(i, a, b, None)))
            threads.append(threading.Thread(target=ask, args=(i, b, a, base)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, (a, b) in enumerate(pairs):
            (sa, ja), (sb, jb) = results[(i, a.id)], results[(i, b.id)]
            assert sorted([sa, sb]) == [200, 201], (sa, ja, sb, jb)
            assert ja["id"] == jb["id"] == pair_id(a.id, b.id)
            rows = psql("SELECT count(*) FROM rm.conversations WHERE convo_id = $$%s$$"
                        % ja["id"])
            assert rows == [["1"]]
            # one ConversationCreated in the log: the projector applied one creation
            rows = psql("SELECT count(*) FROM rm.members WHERE convo_id = $$%s$$" % ja["id"])
            assert rows == [["2"]]
    finally:
        p.stop()
