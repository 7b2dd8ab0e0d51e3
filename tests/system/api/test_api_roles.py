"""Conversation roles through kchat-api against the whole live stack: the creator is the
owner; owners and admins rename, set the topic, add and remove members and change roles
(PATCH /conversations/{id}, POST /conversations/{id}/members, DELETE and PATCH
/conversations/{id}/members/{user_id}); anyone leaves (DELETE of one's own id); the last
owner leaving hands ownership on; a former member reads history and search only up to the
message they left at (left_seq), and all of history again once added back (search from that
moment on: it never finds what came before a member joined). The rules are the
processor's; the API maps its refusals to statuses, and every body carries `topic` and
`roles` on both read paths (Redis and Postgres)."""
import json
import uuid


from kchat_testkit.api import (BASE, User, call, conforms, send_all, serving_without_redis,
                               wait_last_seq)
from kchat_testkit.daemon import Daemon
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import DAEMONS, ROOT, psql



# ---- helpers ----

def create(user, title="roles", members=()):
    r = user.post("/conversations", {"title": title, "members": [m.id for m in members]})
    assert r.status == 201, r
    return r.json


def set_role(by, cid, who, role):
    return by.patch(f"/conversations/{cid}/members/{who.id}", {"role": role})


def remove(by, cid, who):
    return by.delete(f"/conversations/{cid}/members/{who.id}")


def roles_of(user, cid):
    r = user.get(f"/conversations/{cid}")
    assert r.status == 200, r
    return r.json["roles"]


def listed(user, cid, base=None):
    """The conversation as GET /conversations lists it (None when it is not listed)."""
    if base is None:
        r = user.get("/conversations")
        status, body = r.status, r.json
    else:
        status, _, raw = http_get(base + "/conversations",
                                  headers={"Authorization": f"Bearer {user.token}"})
        body = json.loads(raw)
    assert status == 200, (status, body)
    return next((c for c in body["conversations"] if c["id"] == cid), None)


def history(user, cid, **params):
    q = "&".join(f"{k}={v}" for k, v in params.items())
    return user.get(f"/conversations/{cid}/messages" + (f"?{q}" if q else ""))


def pages(source):
    return metric(BASE, "kchat_api_history_pages_total", f'source="{source}"')


# ---- roles, rename and topic ----

def test_the_creator_is_the_owner_and_bodies_carry_roles_and_topic(alice, bob):
    carol = User()
    c = create(alice, "owned", [bob, carol])
    assert c["roles"] == {alice.id: "owner", bob.id: "member", carol.id: "member"}
    assert c["topic"] == "" and c["created_by"] == alice.id
    rows = psql("SELECT user_id, role FROM rm.members WHERE convo_id = $$%s$$" % c["id"])
    assert dict(rows) == c["roles"]
    for u in (alice, bob, carol):
        assert roles_of(u, c["id"]) == c["roles"]
    # the list (the Redis read model) says the same as GET /conversations/{id} (Postgres)
    got = wait_until(lambda: (x := listed(bob, c["id"])) and x["roles"] == c["roles"] and x,
                     "the roles in the Redis list")
    assert got == bob.get(f"/conversations/{c['id']}").json


def test_rename_and_topic_by_owner_and_admin_not_by_a_member(alice, bob):
    carol = User()
    c = create(alice, "before", [bob, carol])
    cid = c["id"]
    r = alice.patch(f"/conversations/{cid}", {"title": "after"})
    assert r.status == 200 and r.json["title"] == "after" and r.json["topic"] == "", r
    r = alice.patch(f"/conversations/{cid}", {"topic": "what we talk about"})
    assert (r.status, r.json["title"], r.json["topic"]) == (200, "after", "what we talk about"), r
    # a plain member may not
    r = bob.patch(f"/conversations/{cid}", {"title": "mine now"})
    assert (r.status, r.code) == (403, "not_allowed"), r
    r = bob.patch(f"/conversations/{cid}", {"topic": "x"})
    assert (r.status, r.code) == (403, "not_allowed"), r
    # an admin may: both at once, other fields ignored
    assert set_role(alice, cid, bob, "admin").status == 200
    r = bob.patch(f"/conversations/{cid}", {"title": "by the admin", "topic": "t2",
                                             "kind": "direct", "extra": [1]})
    assert (r.status, r.json["title"], r.json["topic"]) == (200, "by the admin", "t2"), r
    # a title of exactly 256 bytes (multi-byte), a topic of exactly 1024, then cleared
    r = bob.patch(f"/conversations/{cid}", {"title": "é" * 128, "topic": "t" * 1024})
    assert r.status == 200 and r.json["title"] == "é" * 128 and len(r.json["topic"]) == 1024, r
    r = alice.patch(f"/conversations/{cid}", {"topic": "", "title": None})
    assert (r.status, r.json["title"], r.json["topic"]) == (200, "é" * 128, ""), r
    # everyone sees it, on both read paths
    one = carol.get(f"/conversations/{cid}").json
    assert (one["title"], one["topic"]) == ("é" * 128, "")
    wait_until(lambda: listed(carol, cid) == carol.get(f"/conversations/{cid}").json,
               "the Redis list equal to Postgres after the rename")
    # a stranger gets the 404 of every conversation that is not theirs
    r = User().patch(f"/conversations/{cid}", {"title": "x"})
    assert (r.status, r.code) == (404, "not_found"), r


def test_rename_input_is_checked(alice):
    cid = create(alice, "checked")["id"]
    bad = [
        {},
        {"title": None, "topic": None},
        {"other": "x"},
        {"title": ""},
        {"title": "a" * 257},
        {"title": "é" * 129},  # 258 bytes
        {"title": 7},
        {"title": ["x"]},
        {"topic": "t" * 1025},
        {"topic": False},
    ]
    for body in bad:
        r = alice.patch(f"/conversations/{cid}", body)
        assert (r.status, r.code) == (400, "invalid_request"), (body, r)
        conforms("/conversations/{id}", "PATCH", r)
    r = call("PATCH", f"/conversations/{cid}", raw=b'{"title": "\xff"}', token=alice.token)
    assert (r.status, r.code) == (400, "invalid_utf8"), r
    r = call("PATCH", f"/conversations/{cid}", raw=b"[1]", token=alice.token)
    assert (r.status, r.code) == (400, "invalid_json"), r
    r = call("PATCH", f"/conversations/{cid}", {"title": "x"})
    assert r.status == 401, r
    assert alice.get(f"/conversations/{cid}").json["title"] == "checked"


# ---- members: add, remove, leave ----

def test_add_and_remove_by_owner_and_admin_only(alice):
    owner, admin, member, other, newcomer = alice, User(), User(), User(), User()
    c = create(owner, "crew", [admin, member, other])
    cid = c["id"]
    assert set_role(owner, cid, admin, "admin").status == 200
    # a plain member adds and removes nobody
    r = member.post(f"/conversations/{cid}/members", {"members": [newcomer.id]})
    assert (r.status, r.code) == (403, "not_allowed"), r
    r = remove(member, cid, other)
    assert (r.status, r.code) == (403, "not_allowed"), r
    # an admin adds and removes members, but not an owner
    r = admin.post(f"/conversations/{cid}/members", {"members": [newcomer.id]})
    assert r.status == 200 and r.json["roles"][newcomer.id] == "member", r
    r = remove(admin, cid, newcomer)
    assert (r.status, r.raw) == (204, b""), r
    conforms("/conversations/{id}/members/{user_id}", "DELETE", r)
    r = remove(admin, cid, owner)
    assert (r.status, r.code) == (403, "not_allowed"), r
    conforms("/conversations/{id}/members/{user_id}", "DELETE", r)
    # an owner removes an admin
    assert remove(owner, cid, admin).status == 204
    got = owner.get(f"/conversations/{cid}").json
    assert sorted(got["members"]) == sorted([owner.id, member.id, other.id])
    assert got["roles"] == {owner.id: "owner", member.id: "member", other.id: "member"}
    # those removed no longer see the conversation
    for gone in (admin, newcomer):
        assert gone.get(f"/conversations/{cid}").status == 404
        assert listed(gone, cid) is None
        r = remove(gone, cid, member)
        assert (r.status, r.code) == (404, "not_found"), r
    # removing someone who is not a member is refused and changes nothing
    r = remove(owner, cid, User())
    assert (r.status, r.code) == (404, "no_such_member"), r
    assert sorted(owner.get(f"/conversations/{cid}").json["members"]) == sorted(
        [owner.id, member.id, other.id])


def test_leave(alice, bob):
    carol = User()
    cid = create(alice, "leaving", [bob, carol])["id"]
    r = remove(carol, cid, carol)
    assert (r.status, r.raw) == (204, b""), r
    assert carol.get(f"/conversations/{cid}").status == 404
    assert listed(carol, cid) is None
    assert carol.id not in alice.get(f"/conversations/{cid}").json["members"]
    assert carol.id not in alice.get(f"/conversations/{cid}").json["roles"]
    # leaving again: no longer a member, the conversation is not there for them
    r = remove(carol, cid, carol)
    assert (r.status, r.code) == (404, "not_found"), r


def test_the_last_owner_leaving_hands_ownership_to_the_oldest_admin(alice):
    v, w, x = User(), User(), User()
    cid = create(alice, "succession", [v, w, x])["id"]
    # x is made admin first, w after; w joined before x: w is the oldest admin
    assert set_role(alice, cid, x, "admin").status == 200
    assert set_role(alice, cid, w, "admin").status == 200
    assert remove(alice, cid, alice).status == 204
    assert roles_of(v, cid) == {v.id: "member", w.id: "owner", x.id: "admin"}
    # the new owner may do what owners do
    assert set_role(w, cid, v, "admin").status == 200


def test_without_an_admin_the_oldest_member_becomes_owner(alice):
    v, w = User(), User()
    cid = create(alice, "no admins", [v, w])["id"]
    assert remove(alice, cid, alice).status == 204
    assert roles_of(w, cid) == {v.id: "owner", w.id: "member"}
    wait_until(lambda: (x := listed(w, cid)) and x["roles"] == {v.id: "owner", w.id: "member"},
               "the promotion in the Redis list")
    # the last one out leaves an empty conversation
    assert remove(v, cid, v).status == 204
    assert remove(w, cid, w).status == 204
    assert psql("SELECT count(*) FROM rm.members WHERE convo_id = $$%s$$" % cid) == [["0"]]


# ---- role changes ----

def test_roles_owner_admin_member(alice):
    v, w = User(), User()
    cid = create(alice, "ranks", [v, w])["id"]
    r = set_role(alice, cid, v, "admin")
    assert r.status == 200 and r.json["roles"][v.id] == "admin", r
    conforms("/conversations/{id}/members/{user_id}", "PATCH", r)
    # an admin makes and unmakes admins, but not owners
    assert set_role(v, cid, w, "admin").status == 200
    assert set_role(v, cid, w, "member").status == 200
    for role, who in (("owner", w), ("owner", v), ("member", alice), ("admin", alice)):
        r = set_role(v, cid, who, role)
        assert (r.status, r.code) == (403, "not_allowed"), (role, r)
    # a plain member changes nothing
    r = set_role(w, cid, w, "admin")
    assert (r.status, r.code) == (403, "not_allowed"), r
    conforms("/conversations/{id}/members/{user_id}", "PATCH", r)
    # the last owner cannot step down; with a second owner they can
    r = set_role(alice, cid, alice, "member")
    assert (r.status, r.code) == (409, "last_owner"), r
    conforms("/conversations/{id}/members/{user_id}", "PATCH", r)
    assert set_role(alice, cid, v, "owner").status == 200
    r = set_role(alice, cid, alice, "admin")
    assert r.status == 200, r
    assert r.json["roles"] == {alice.id: "admin", v.id: "owner", w.id: "member"}
    r = set_role(v, cid, v, "member")
    assert (r.status, r.code) == (409, "last_owner"), r
    # setting the role someone has already is fine
    assert set_role(v, cid, w, "member").status == 200


def test_role_of_a_non_member_and_bad_role_requests(alice):
    v = User()
    cid = create(alice, "who", [v])["id"]
    r = set_role(alice, cid, User(), "admin")
    assert (r.status, r.code) == (404, "no_such_member"), r
    conforms("/conversations/{id}/members/{user_id}", "PATCH", r)
    base = f"/conversations/{cid}/members/{v.id}"
    for body in [{}, {"role": "boss"}, {"role": "Owner"}, {"role": 1}, {"role": None},
                 {"role": ["admin"]}]:
        r = alice.patch(base, body)
        assert (r.status, r.code) == (400, "invalid_request"), (body, r)
        conforms("/conversations/{id}/members/{user_id}", "PATCH", r)
    r = call("PATCH", base, raw=b"role=admin", token=alice.token)
    assert (r.status, r.code) == (400, "invalid_json"), r
    # a bad id in either place of the path is no such thing
    for path in [f"/conversations/{cid}/members/a%20b", f"/conversations/{cid}/members/" + "u" * 129,
                 "/conversations/a%20b/members/" + v.id]:
        r = alice.patch(path, {"role": "admin"})
        assert (r.status, r.code) == (404, "not_found"), (path, r)
        r = alice.delete(path)
        assert (r.status, r.code) == (404, "not_found"), (path, r)
    r = alice.get(base)
    assert (r.status, r.code) == (405, "method_not_allowed"), r
    # a stranger: no such conversation
    eve = User()
    r = set_role(eve, cid, v, "admin")
    assert (r.status, r.code) == (404, "not_found"), r
    r = set_role(eve, cid, eve, "owner")
    assert (r.status, r.code) == (404, "not_found"), r
    assert roles_of(alice, cid) == {alice.id: "owner", v.id: "member"}


def test_a_direct_conversation_has_no_title_topic_roles_or_member_changes(alice):
    other = User()
    r = alice.post("/conversations", {"kind": "direct", "members": [other.id]})
    assert r.status == 201, r
    d = r.json
    assert d["roles"] == {alice.id: "owner", other.id: "member"} and d["topic"] == ""
    for resp in [alice.patch(f"/conversations/{d['id']}", {"title": "renamed"}),
                 alice.patch(f"/conversations/{d['id']}", {"topic": "t"}),
                 set_role(alice, d["id"], other, "admin"),
                 remove(alice, d["id"], other),
                 remove(other, d["id"], other)]:
        assert (resp.status, resp.code) == (409, "direct_conversation"), resp
    got = alice.get(f"/conversations/{d['id']}").json
    assert (got["title"], sorted(got["members"])) == ("", sorted([alice.id, other.id]))


# ---- history and search of a former member ----

def test_a_former_member_reads_up_to_left_seq_and_again_once_back(alice, commands):
    owner, v = alice, User()
    word = uuid.uuid4().hex[:10]
    cid = create(owner, "history", [v])["id"]
    send_all(commands, cid, owner, [f"before{word} one", f"before{word} two",
                                    f"before{word} three"])
    wait_last_seq(owner, cid, 3)
    assert remove(owner, cid, v).status == 204
    assert psql("SELECT left_seq FROM rm.departures WHERE convo_id = $$%s$$ AND user_id = $$%s$$"
                % (cid, v.id)) == [["3"]]
    send_all(commands, cid, owner, [f"after{word} four", f"after{word} five"])
    wait_last_seq(owner, cid, 5)

    redis0, pg0 = pages("redis"), pages("postgres")
    r = history(v, cid)
    assert r.status == 200, r
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2, 3]
    assert (r.json["left_seq"], r.json["next_cursor"]) == (3, None)
    conforms("/conversations/{id}/messages", "GET", r)
    r = history(v, cid, since_seq=0, limit=2)
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2]
    assert r.json["next_cursor"] == {"since_seq": 2} and r.json["left_seq"] == 3
    r = history(v, cid, since_seq=2, limit=2)
    assert [m["seq_no"] for m in r.json["messages"]] == [3] and r.json["next_cursor"] is None
    for params in [{"since_seq": 3}, {"since_seq": 4}, {"since_seq": 0, "before_seq": 1}]:
        r = history(v, cid, **params)
        assert r.status == 200 and r.json["messages"] == [] and r.json["next_cursor"] is None, r
    r = history(v, cid, before_seq=5)
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2, 3]
    r = history(v, cid, before_seq=3, limit=1)
    assert [m["seq_no"] for m in r.json["messages"]] == [2]
    assert r.json["next_cursor"] == {"before_seq": 2}
    # never from the Redis tail, which would hold 4 and 5
    assert pages("redis") == redis0 and pages("postgres") - pg0 == 8
    # the conversation itself stays hidden
    assert v.get(f"/conversations/{cid}").status == 404
    assert listed(v, cid) is None
    # search: what they saw, nothing later
    r = v.get(f"/search?q=before{word}")
    assert sorted(m["seq_no"] for m in r.json["messages"]) == [1, 2, 3], r
    conforms("/search", "GET", r)
    assert v.get(f"/search?q=after{word}").json["messages"] == []
    # a member sees it all, without left_seq
    r = history(owner, cid)
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2, 3, 4, 5]
    assert "left_seq" not in r.json
    assert len(owner.get(f"/search?q=after{word}").json["messages"]) == 2
    # a stranger still gets nothing
    eve = User()
    assert history(eve, cid).status == 404
    assert eve.get(f"/search?q=before{word}").json["messages"] == []

    # added back: the whole history again (search: from the re-join on)
    r = owner.post(f"/conversations/{cid}/members", {"members": [v.id]})
    assert r.status == 200 and r.json["roles"][v.id] == "member", r
    r = history(v, cid)
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2, 3, 4, 5]
    assert "left_seq" not in r.json
    # search covers a member's messages from when they (last) joined: none of these
    assert v.get(f"/search?q=after{word}").json["messages"] == []
    assert v.get(f"/search?q=before{word}").json["messages"] == []
    assert v.get(f"/conversations/{cid}").status == 200
    assert psql("SELECT count(*) FROM rm.departures WHERE convo_id = $$%s$$" % cid) == [["0"]]


def test_one_who_left_reads_up_to_when_they_left(alice, commands):
    v = User()
    word = uuid.uuid4().hex[:10]
    cid = create(alice, "left", [v])["id"]
    send_all(commands, cid, v, [f"mine{word}"])
    wait_last_seq(alice, cid, 1)
    assert remove(v, cid, v).status == 204
    send_all(commands, cid, alice, [f"later{word}"])
    wait_last_seq(alice, cid, 2)
    r = history(v, cid)
    assert [m["content"] for m in r.json["messages"]] == [f"mine{word}"], r
    assert r.json["left_seq"] == 1
    assert [m["seq_no"] for m in v.get(f"/search?q=mine{word}").json["messages"]] == [1]
    assert v.get(f"/search?q=later{word}").json["messages"] == []
    # they may not write or mark anything there any more
    r = v.post(f"/conversations/{cid}/read", {"seq_no": 1})
    assert (r.status, r.code) == (404, "not_found"), r


# ---- both list paths ----

def test_both_list_paths_carry_roles_and_topic(alice, bob):
    carol = User()
    cid = create(alice, "paths", [bob, carol])["id"]
    assert set_role(alice, cid, bob, "admin").status == 200
    assert alice.patch(f"/conversations/{cid}", {"topic": "a \"quoted\" topic é"}).status == 200
    want = carol.get(f"/conversations/{cid}").json
    assert want["roles"] == {alice.id: "owner", bob.id: "admin", carol.id: "member"}
    assert want["topic"] == "a \"quoted\" topic é"
    # the Redis path
    lists0 = metric(BASE, "kchat_api_conversation_lists_total", 'source="redis"')
    got = wait_until(lambda: (x := listed(carol, cid)) == want and x, "the Redis list")
    assert got == want
    assert metric(BASE, "kchat_api_conversation_lists_total", 'source="redis"') > lists0
    # the Postgres path: an API without Redis lists from Postgres
    port = free_port()
    p = Daemon(DAEMONS["api"]["binary"], [f"--listen-port={port}",
                                          f"--schemas-dir={ROOT / 'schemas'}",
                                          f"--redis-port={free_port()}"])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: serving_without_redis(base), "the API without Redis up")
        assert listed(carol, cid, base) == want
        assert metric(base, "kchat_api_conversation_lists_total", 'source="postgres"') >= 1
        assert metric(base, "kchat_api_conversation_lists_total", 'source="redis"') == 0
    finally:
        p.stop()
