"""kchat-api's conversations, history and search against the whole live stack: changes go
through Kafka, the processor and the projector and are read back; messages are sent as
commands with an independent producer (kchat_testkit.wire) and paged back through the API."""
import json
import signal
import threading
import urllib.parse
import uuid

from kchat_testkit.api import BASE, User, api_instance, send_all, wait_last_seq
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import psql


def create(user, title="a title", members=()):
    r = user.post("/conversations", {"title": title, "members": list(members)})
    assert r.status == 201, r
    return r.json


def all_pages(user, convo, **params):
    """Follows next_cursor from the given start; returns (messages, number of pages)."""
    got, pages = [], 0
    while True:
        q = urllib.parse.urlencode(params)
        r = user.get(f"/conversations/{convo}/messages?{q}")
        assert r.status == 200, r
        pages += 1
        seqs = [m["seq_no"] for m in r.json["messages"]]
        assert seqs == sorted(seqs), "every page is in ascending seq_no"
        cur = r.json["next_cursor"]
        if "since_seq" in params:
            got = got + r.json["messages"]
        else:
            got = r.json["messages"] + got
        if cur is None:
            return got, pages
        params = {k: v for k, v in params.items() if k in ("limit", "before_seq")} | cur
        assert pages < 1000


def test_create_reads_its_own_write(alice, bob):
    c = create(alice, "first", [bob.id])
    assert c["id"].startswith("c_")
    assert c["title"] == "first"
    assert sorted(c["members"]) == sorted([alice.id, bob.id])
    assert (c["last_seq"], c["unread"], c["last_message"]) == (0, 0, None)
    assert c["created_by"] == alice.id
    # at once, for both members
    for u in (alice, bob):
        r = u.get(f"/conversations/{c['id']}")
        assert r.status == 200 and r.json["id"] == c["id"], r
        assert c["id"] in [x["id"] for x in u.get("/conversations").json["conversations"]]
    # a conversation alone, and repeated members counted once
    solo = create(alice, "solo", [alice.id, alice.id])
    assert solo["members"] == [alice.id]


def test_create_checks_members(alice):
    r = alice.post("/conversations", {"title": "x", "members": ["u_doesnotexist0000000000000000"]})
    assert (r.status, r.code) == (400, "unknown_user"), r
    for members in ["u_x", [1], ["has space"], [""], ["a" * 129], {"a": 1}]:
        r = alice.post("/conversations", {"title": "x", "members": members})
        assert (r.status, r.code) == (400, "invalid_request"), (members, r)
    r = alice.post("/conversations", {"title": "x", "members": [f"u_{i}" for i in range(1001)]})
    assert (r.status, r.code) == (400, "too_many_members"), r
    for title in [None, 5, "t" * 257, ["x"]]:
        r = alice.post("/conversations", {"title": title, "members": []})
        assert (r.status, r.code) == (400, "invalid_request"), (title, r)


def test_add_members_and_read_marker(alice, bob, commands):
    carol = User()
    c = create(alice, "grow")
    assert bob.get(f"/conversations/{c['id']}").status == 404
    r = alice.post(f"/conversations/{c['id']}/members", {"members": [bob.id, carol.id]})
    assert r.status == 200, r
    assert sorted(r.json["members"]) == sorted([alice.id, bob.id, carol.id])
    assert bob.get(f"/conversations/{c['id']}").status == 200
    send_all(commands, c["id"], alice, ["one", "two", "three"])
    wait_last_seq(bob, c["id"], 3)
    assert bob.get(f"/conversations/{c['id']}").json["unread"] == 3
    r = bob.post(f"/conversations/{c['id']}/read", {"seq_no": 2})
    assert r.status == 200, r
    assert (r.json["read_seq"], r.json["unread"]) == (2, 1)
    # the sender has read its own messages
    assert alice.get(f"/conversations/{c['id']}").json["unread"] == 0
    # every member sees who read how far (the ticks), in the conversation and in the list,
    # which comes from Redis; carol read nothing
    for u in (alice, bob, carol):
        got = u.get(f"/conversations/{c['id']}").json["receipts"]
        assert got == {alice.id: {"read_seq": 3, "delivered_seq": 3},
                       bob.id: {"read_seq": 2, "delivered_seq": 2}}, (u.name, got)
        listed = [x for x in u.get("/conversations").json["conversations"] if x["id"] == c["id"]]
        assert listed[0]["receipts"] == got
    # beyond the last message: the processor refuses it
    r = bob.post(f"/conversations/{c['id']}/read", {"seq_no": 4})
    assert (r.status, r.code) == (400, "no_such_message"), r
    for bad in [0, -1, 1.5, "2", None, True, 2 ** 60]:
        r = bob.post(f"/conversations/{c['id']}/read", {"seq_no": bad})
        assert r.status == 400, (bad, r)
    r = alice.post(f"/conversations/{c['id']}/members", {"members": []})
    assert (r.status, r.code) == (400, "invalid_request")


def test_history_pages_in_both_directions(alice, bob, commands):
    c = create(alice, "history", [bob.id])
    texts = [f"message {i} {'é' * (i % 3)}" for i in range(1, 24)]  # 23 messages
    send_all(commands, c["id"], alice, texts[:12])
    send_all(commands, c["id"], bob, texts[12:])
    wait_last_seq(alice, c["id"], 23)

    def check(msgs):
        assert [m["seq_no"] for m in msgs] == list(range(1, 24))
        assert [m["content"] for m in msgs] == texts
        senders = [m["sender_id"] for m in msgs]
        assert senders == [alice.id] * 12 + [bob.id] * 11
        for m in msgs:
            assert m["convo_id"] == c["id"]
            assert m["server_msg_id"] == f"{c['id']}:{m['seq_no']}"

    # backwards from the newest, 5 at a time: 5 pages
    msgs, pages = all_pages(alice, c["id"], limit=5)
    check(msgs)
    assert pages == 5
    # forwards from the start, 7 at a time
    msgs, pages = all_pages(bob, c["id"], limit=7, since_seq=0)
    check(msgs)
    assert pages == 4
    # one page holding everything
    r = alice.get(f"/conversations/{c['id']}/messages?limit=200")
    check(r.json["messages"])
    assert r.json["next_cursor"] is None
    # a window: since and before together
    r = alice.get(f"/conversations/{c['id']}/messages?since_seq=10&before_seq=15&limit=3")
    assert [m["seq_no"] for m in r.json["messages"]] == [11, 12, 13]
    assert r.json["next_cursor"] == {"since_seq": 13}
    r = alice.get(f"/conversations/{c['id']}/messages?since_seq=13&before_seq=15&limit=3")
    assert [m["seq_no"] for m in r.json["messages"]] == [14]
    assert r.json["next_cursor"] is None
    r = alice.get(f"/conversations/{c['id']}/messages?before_seq=4&limit=10")
    assert [m["seq_no"] for m in r.json["messages"]] == [1, 2, 3]
    assert r.json["next_cursor"] is None
    r = alice.get(f"/conversations/{c['id']}/messages?since_seq=23")
    assert r.json == {"messages": [], "next_cursor": None}
    # the default page is the newest 50
    r = alice.get(f"/conversations/{c['id']}/messages")
    check(r.json["messages"])
    # the conversation shows its last message
    conv = alice.get(f"/conversations/{c['id']}").json
    assert conv["last_seq"] == 23 and conv["last_message"]["content"] == texts[-1]


def test_list_is_most_recent_activity_first(commands):
    u = User()
    a = create(u, "older")
    b = create(u, "newer")
    ids = [x["id"] for x in u.get("/conversations").json["conversations"]]
    assert ids == [b["id"], a["id"]]
    send_all(commands, a["id"], u, ["wake up"])
    wait_last_seq(u, a["id"], 1)
    convs = u.get("/conversations").json["conversations"]
    assert [x["id"] for x in convs] == [a["id"], b["id"]]
    assert convs[0]["last_message"]["content"] == "wake up"
    assert [x["id"] for x in u.get("/conversations?limit=1").json["conversations"]] == [a["id"]]


def test_search_sees_only_the_callers_conversations(alice, bob, commands):
    carol = User()
    word = f"zebra{uuid.uuid4().hex[:8]}"
    shared = create(alice, "shared", [bob.id])
    private = create(carol, "carol's")
    send_all(commands, shared["id"], alice, [f"the {word} crossed", "nothing here"])
    send_all(commands, private["id"], carol, [f"carol's {word} too"])
    wait_last_seq(alice, shared["id"], 2)
    wait_last_seq(carol, private["id"], 1)
    for u, want in ((alice, [shared["id"]]), (bob, [shared["id"]]), (carol, [private["id"]])):
        r = u.get(f"/search?q={word}")
        assert r.status == 200, r
        assert [m["convo_id"] for m in r.json["messages"]] == want, (u.name, r)
    r = alice.get(f"/search?q={word}+crossed")
    assert [m["content"] for m in r.json["messages"]] == [f"the {word} crossed"]
    stranger = User()
    assert stranger.get(f"/search?q={word}").json["messages"] == []


def test_non_members_get_404_on_every_endpoint(alice, bob, commands):
    c = create(alice, "private", [bob.id])
    send_all(commands, c["id"], alice, ["secret"])
    wait_last_seq(alice, c["id"], 1)
    eve = User()
    cid = c["id"]
    for r in [eve.get(f"/conversations/{cid}"),
              eve.get(f"/conversations/{cid}/messages"),
              eve.get(f"/conversations/{cid}/messages?since_seq=0"),
              eve.post(f"/conversations/{cid}/members", {"members": [eve.id]}),
              eve.post(f"/conversations/{cid}/read", {"seq_no": 1})]:
        assert (r.status, r.code) == (404, "not_found"), r
    # the same answer as for a conversation that does not exist
    nope = eve.get("/conversations/c_doesnotexist")
    assert nope.json == eve.get(f"/conversations/{cid}").json
    assert cid not in [x["id"] for x in eve.get("/conversations").json["conversations"]]
    # nothing changed: eve is still not a member
    assert sorted(alice.get(f"/conversations/{cid}").json["members"]) == sorted([alice.id, bob.id])


def rm_counts():
    return psql("SELECT (SELECT count(*) FROM rm.conversations), (SELECT count(*) FROM rm.members),"
                " (SELECT count(*) FROM rm.messages), (SELECT count(*) FROM users)")[0]


def test_hostile_input_gets_4xx_and_changes_nothing(alice, bob, commands):
    c = create(alice, "target", [bob.id])
    cid = c["id"]
    before = rm_counts()
    sql = "x'); DROP TABLE rm.messages; --"
    bad = [
        # query values
        (alice.get(f"/conversations/{cid}/messages?limit=abc"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?limit=0"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?limit=201"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?limit=1.5"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?limit="), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?since_seq=-1"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?before_seq=99999999999999999999999"), 400,
         "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?before_seq=1%20OR%201=1"), 400, "invalid_query"),
        (alice.get(f"/conversations/{cid}/messages?limit=%ff"), 400, "invalid_query"),
        (alice.get("/search?q="), 400, "invalid_query"),
        (alice.get("/search"), 400, "invalid_query"),
        (alice.get("/search?q=" + "a" * 300), 400, "invalid_query"),
        (alice.get("/search?q=%c3%28"), 400, "invalid_query"),
        (alice.get("/conversations?limit=-5"), 400, "invalid_query"),
        # ids in the path
        (alice.get("/conversations/" + urllib.parse.quote(sql, safe="")), 404, "not_found"),
        (alice.get("/conversations/" + "c" * 200), 404, "not_found"),
        (alice.get("/conversations/c_x%00y"), 404, "not_found"),
        # bodies
        (alice.post("/conversations", raw=b"{bad", headers={"Content-Type": "application/json"}),
         400, "invalid_json"),
        (alice.post("/conversations", raw=b'{"title":"\xff"}'), 400, "invalid_utf8"),
        (alice.post("/conversations", raw=b"x" * 70000), 413, "payload_too_large"),
        (alice.post(f"/conversations/{cid}/members", {"members": "everyone"}), 400,
         "invalid_request"),
        (alice.post(f"/conversations/{cid}/members", {"members": [sql]}), 400, "invalid_request"),
        (alice.post(f"/conversations/{cid}/read", raw=b'{"seq_no": 1e400}'), 400, None),
    ]
    for r, status, code in bad:
        assert r.status == status, r
        assert r.json and r.json["error"]["message"], r
        if code:
            assert r.code == code, r
    # text that looks like SQL is only text
    for q in [sql, "' OR '1'='1", "a & b | !c", "'; SELECT pg_sleep(10); --"]:
        r = alice.get("/search?q=" + urllib.parse.quote(q))
        assert r.status == 200 and r.json["messages"] == [], (q, r)
    for q in ["%", "_", "\\", "' & ! :*"]:  # nothing to search for: no letter or digit
        r = alice.get("/search?q=" + urllib.parse.quote(q))
        assert (r.status, r.code) == (400, "invalid_query"), (q, r)
    t = alice.post("/conversations", {"title": sql, "members": []})
    assert t.status == 201 and t.json["title"] == sql
    after = rm_counts()
    assert after[0] == str(int(before[0]) + 1) and after[1:] == [str(int(before[1]) + 1),
                                                                  *before[2:]]


def test_health_and_metrics(alice):
    alice.get("/conversations/c_none/messages")
    status, _, body = http_get(BASE + "/health")
    assert status == 200
    checks = json.loads(body)["checks"]
    assert {"postgres", "postgres_listen", "redis", "kafka_producer"} <= set(checks)
    text = http_get(BASE + "/metrics")[2].decode()
    assert 'kchat_api_http_requests_total{route="/conversations/:id/messages",status="404"}' in text
    assert 'kchat_api_http_requests_total{route="/conversations",status="201"}' in text
    assert "kchat_api_commands_total" in text


# ---- a second instance, to see the waits end ----

def test_no_outcome_is_504_and_a_drain_answers_the_waiting(alice):
    # Commands to a topic no processor reads never get an outcome.
    p, base = api_instance("--commands-topic=chat.commands.dlq", "--command-timeout-ms=3000")
    try:
        results = []

        def create_one():
            results.append(http_get(base + "/conversations", timeout=30, method="POST",
                                    data=json.dumps({"title": "lost"}).encode(),
                                    headers={"Authorization": f"Bearer {alice.token}"}))

        t = threading.Thread(target=create_one)
        t.start()
        wait_until(lambda: "kchat_api_commands_total 1" in
                   http_get(base + "/metrics")[2].decode(), "the command sent")
        p.send_signal(signal.SIGTERM)  # the drain waits for the request in flight
        t.join(30)
        assert p.wait(30) == 0
        status, _, body = results[0]
        assert status == 504 and json.loads(body)["error"]["code"] == "timeout"
        logs = p.entries()
        msgs = [x["msg"] for x in logs]
        assert "waiting for the requests in flight" in msgs and "drained" in msgs, msgs
        assert msgs.index("no outcome within command-timeout-ms") < msgs.index("drained")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def history_pages(source):
    text = http_get(BASE + "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith(f'kchat_api_history_pages_total{{source="{source}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_history_beyond_the_redis_tail(alice, commands):
    """The projector keeps the newest 100 messages in Redis: pages inside that tail come from
    Redis, older ones from Postgres, and the whole history reads the same either way."""
    c = create(alice, "long")
    texts = [f"long {i}" for i in range(1, 131)]
    send_all(commands, c["id"], alice, texts)
    wait_last_seq(alice, c["id"], 130)
    redis0, pg0 = history_pages("redis"), history_pages("postgres")
    msgs, pages = all_pages(alice, c["id"], limit=40)  # 130..91, 90..51, 50..11, 10..1
    assert [m["content"] for m in msgs] == texts and pages == 4
    assert history_pages("redis") - redis0 == 2  # 91-130 and 51-90 lie in the tail (31-130)
    assert history_pages("postgres") - pg0 == 2
    fwd, _ = all_pages(alice, c["id"], limit=40, since_seq=0)
    assert fwd == msgs  # the same objects from Postgres and from Redis


def test_list_from_redis_matches_postgres(alice, bob, commands):
    """GET /conversations comes from the Redis read model; what it says equals rm.* in
    Postgres, row for row."""
    u = User()
    a = create(u, "one", [bob.id])
    b = create(u, "two \"quoted\" é")
    send_all(commands, a["id"], bob, ["hi", "there"])
    wait_last_seq(u, a["id"], 2)
    u.post(f"/conversations/{a['id']}/read", {"seq_no": 1})
    lists0 = metric(BASE, "kchat_api_conversation_lists_total", 'source="redis"')
    got = u.get("/conversations").json["conversations"]
    assert metric(BASE, "kchat_api_conversation_lists_total", 'source="redis"') == lists0 + 1
    rows = psql("SELECT c.convo_id, c.title, c.last_seq, m.read_seq, "
                "(SELECT string_agg(user_id, ',' ORDER BY user_id) FROM rm.members x "
                " WHERE x.convo_id = c.convo_id) "
                "FROM rm.members m JOIN rm.conversations c USING (convo_id) "
                "WHERE m.user_id = $$" + u.id + "$$ ORDER BY c.last_activity DESC")
    assert [(c["id"], c["title"], str(c["last_seq"]), str(c["read_seq"]), ",".join(c["members"]))
            for c in got] == [tuple(r) for r in rows]
    assert [c["id"] for c in got] == [a["id"], b["id"]]
    assert (got[0]["unread"], got[0]["last_message"]["content"]) == (1, "there")
    assert got[1]["last_message"] is None and got[1]["title"] == "two \"quoted\" é"
    # the same objects as GET /conversations/:id, which reads Postgres
    for c in got:
        one = u.get(f"/conversations/{c['id']}").json
        assert one == c
