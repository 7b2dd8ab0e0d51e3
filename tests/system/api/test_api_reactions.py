"""Reactions through kchat-api against the whole live stack: PUT and DELETE
/conversations/{id}/messages/{seq}/reaction are a SetReaction command, decided by the processor
and answered once the projector applied it ({seq_no, emoji, reactions}); every message of
history carries `reactions` (the counts, most chosen first, ties by the emoji's bytes) and the
caller's own `my_reaction`, the same from the Redis tail (whose internal map of who reacted
never leaves the API) and from Postgres; search and the answers of an edit or a delete carry
them too, a conversation's last_message does not. The rules (one reaction per member, 20
different emojis, not on a deleted message nor one older than the edit window) are the
processor's; the API checks the emoji itself and maps the refusals to statuses."""
import json
import os
import time
import uuid

import jsonschema
import pytest

from kchat_testkit.api import (BASE, OPENAPI as SPEC, User, call, conforms, send_all,
                               serving_without_redis, wait_last_seq)
from kchat_testkit.daemon import Daemon
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import DAEMONS, ROOT, psql

REACTION = "/conversations/{id}/messages/{seq}/reaction"

THUMBS, HEART, PARTY, LAUGH = "\U0001F44D", "\u2764\ufe0f", "\U0001F389", "\U0001F602"


# ---- helpers ----

def create(user, title="reactions", members=()):
    r = user.post("/conversations", {"title": title, "members": [m.id for m in members]})
    assert r.status == 201, r
    return r.json["id"]


def conversation_with(commands, owner, members, texts):
    """A conversation of owner and members holding texts (sent by owner), seq_no 1.."""
    cid = create(owner, "reactions", members)
    send_all(commands, cid, owner, texts)
    wait_last_seq(owner, cid, len(texts))
    return cid


def counts(*pairs):
    return [{"emoji": e, "count": n} for e, n in pairs]


def pages(source, base=BASE):
    return metric(base, "kchat_api_history_pages_total", f'source="{source}"')


def history(user, cid, base=BASE, **params):
    """The messages of one page, by seq_no, as user reads them from the API at base."""
    q = "&".join(f"{k}={v}" for k, v in params.items())
    status, _, raw = http_get(f"{base}/conversations/{cid}/messages" + (f"?{q}" if q else ""),
                              headers={"Authorization": f"Bearer {user.token}"}, timeout=30)
    body = json.loads(raw)
    assert status == 200, (status, body)
    schema = SPEC["paths"]["/conversations/{id}/messages"]["get"]["responses"]["200"]
    schema = schema["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**SPEC, "x-probe": schema, "$ref": "#/x-probe"}).validate(
        body)
    return {m["seq_no"]: m for m in body["messages"]}


@pytest.fixture(scope="module")
def pg_api():
    """A second kchat-api whose Redis is nowhere: every page it serves comes from Postgres."""
    port = free_port()
    p = Daemon(DAEMONS["api"]["binary"], [f"--listen-port={port}",
                                          f"--schemas-dir={ROOT / 'schemas'}",
                                          f"--redis-port={free_port()}"])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: serving_without_redis(base), "the API without Redis up")
        yield base
    finally:
        p.stop()


def both_paths(user, cid, pg_api, **params):
    """The page from the Redis tail (the stack's API) and from Postgres (pg_api), checked to
    have come from there and to be the same JSON."""
    redis0, pg0 = pages("redis"), pages("postgres", pg_api)
    from_redis = history(user, cid, **params)
    assert pages("redis") == redis0 + 1, "the page did not come from the Redis tail"
    from_pg = history(user, cid, pg_api, **params)
    assert pages("postgres", pg_api) == pg0 + 1
    assert from_redis == from_pg
    return from_redis


# ---- set, replace, remove ----

def test_set_replace_and_remove(alice, bob, commands):
    cid = conversation_with(commands, alice, [bob], ["one", "two"])
    r = alice.react(cid, 1, THUMBS)
    assert r.status == 200, r
    assert r.json == {"seq_no": 1, "emoji": THUMBS, "reactions": counts((THUMBS, 1))}
    conforms(REACTION, "PUT", r)
    r = bob.react(cid, 1, THUMBS)
    assert r.json == {"seq_no": 1, "emoji": THUMBS, "reactions": counts((THUMBS, 2))}, r
    # another replaces one's own; ties go by the emoji's bytes (U+2764 before U+1F44D)
    r = bob.react(cid, 1, HEART)
    assert r.json == {"seq_no": 1, "emoji": HEART,
                      "reactions": counts((HEART, 1), (THUMBS, 1))}, r
    # the same again changes nothing, and says so
    r = bob.react(cid, 1, HEART)
    assert r.status == 200 and r.json["reactions"] == counts((HEART, 1), (THUMBS, 1)), r
    # removed; removing what is not there answers the reactions as they are
    r = alice.unreact(cid, 1)
    assert r.json == {"seq_no": 1, "emoji": None, "reactions": counts((HEART, 1))}, r
    conforms(REACTION, "DELETE", r)
    r = alice.unreact(cid, 1)
    assert r.json == {"seq_no": 1, "emoji": None, "reactions": counts((HEART, 1))}, r
    r = alice.unreact(cid, 2)
    assert r.json == {"seq_no": 2, "emoji": None, "reactions": []}, r
    # other fields of the body are ignored
    r = alice.put(f"/conversations/{cid}/messages/2/reaction", {"emoji": PARTY, "x": 1})
    assert r.json == {"seq_no": 2, "emoji": PARTY, "reactions": counts((PARTY, 1))}, r
    rows = psql("SELECT seq_no, user_id, emoji FROM rm.reactions WHERE convo_id = $$%s$$ "
                "ORDER BY seq_no, user_id" % cid)
    assert rows == sorted([["1", bob.id, HEART], ["2", alice.id, PARTY]]), rows


# ---- history, search, edits and previews ----

def test_history_from_the_redis_tail_and_from_postgres(alice, bob, commands, pg_api):
    carol = User()
    word = uuid.uuid4().hex[:10]
    cid = conversation_with(commands, alice, [bob, carol],
                            [f"{word} first", f"{word} second", f"{word} third"])
    for u, seq, e in [(alice, 1, THUMBS), (bob, 1, THUMBS), (carol, 1, PARTY), (bob, 2, HEART),
                      (carol, 2, HEART), (alice, 2, LAUGH)]:
        assert u.react(cid, seq, e).status == 200
    want = {1: counts((THUMBS, 2), (PARTY, 1)), 2: counts((HEART, 2), (LAUGH, 1)), 3: []}
    mine = {alice: {1: THUMBS, 2: LAUGH, 3: None}, bob: {1: THUMBS, 2: HEART, 3: None},
            carol: {1: PARTY, 2: HEART, 3: None}}
    for u in (alice, bob, carol):
        got = both_paths(u, cid, pg_api)
        assert sorted(got) == [1, 2, 3]
        for seq, m in got.items():
            assert m["reactions"] == want[seq], (seq, m)
            assert m["my_reaction"] == mine[u][seq], (seq, m)
            assert "reacted" not in m
        # pages of one message, either way
        assert both_paths(u, cid, pg_api, since_seq=1, limit=1)[2]["my_reaction"] == mine[u][2]
    # the Postgres rows say the same
    rows = psql("SELECT seq_no, emoji, count(*) FROM rm.reactions WHERE convo_id = $$%s$$ "
                "GROUP BY seq_no, emoji ORDER BY seq_no, count(*) DESC, emoji COLLATE \"C\""
                % cid)
    assert rows == [["1", THUMBS, "2"], ["1", PARTY, "1"], ["2", HEART, "2"], ["2", LAUGH, "1"]]
    # a change shows at once on both paths (the answer waits for both read models)
    assert carol.unreact(cid, 1).status == 200
    got = both_paths(bob, cid, pg_api)
    assert got[1]["reactions"] == counts((THUMBS, 2)) and got[1]["my_reaction"] == THUMBS
    assert both_paths(carol, cid, pg_api)[1]["my_reaction"] is None

    # search: the same objects as history
    r = bob.get(f"/search?q={word}")
    assert r.status == 200, r
    found = {m["seq_no"]: m for m in r.json["messages"]}
    assert all(m["headline"] for m in found.values())  # search's own field
    assert {s: {k: v for k, v in m.items() if k != "headline"}
            for s, m in found.items()} == got
    # an edit's answer carries them too
    r = alice.patch(f"/conversations/{cid}/messages/2", {"content": f"{word} second, edited"})
    assert r.status == 200, r
    assert r.json["reactions"] == counts((HEART, 2), (LAUGH, 1))
    assert r.json["my_reaction"] == LAUGH and r.json["edit_count"] == 1
    got = both_paths(bob, cid, pg_api)
    assert got[2]["reactions"] == counts((HEART, 2), (LAUGH, 1)) and got[2]["my_reaction"] == HEART
    assert got[2]["content"] == f"{word} second, edited"
    # a conversation's last_message (a preview) has none, from Redis as from Postgres
    assert alice.react(cid, 3, THUMBS).status == 200
    listed = next(c for c in alice.get("/conversations").json["conversations"] if c["id"] == cid)
    one = alice.get(f"/conversations/{cid}").json
    for lm in (listed["last_message"], one["last_message"]):
        assert lm["seq_no"] == 3
        assert not {"reactions", "reacted", "my_reaction"} & set(lm), lm
    assert listed == one


def test_a_page_older_than_the_tail_comes_from_postgres_with_reactions(alice, bob, commands):
    """The projector keeps the newest 100 messages in Redis: a reaction to an older one is in
    Postgres only, and the stack's own API reads that page from there."""
    cid = conversation_with(commands, alice, [bob], [f"m{i}" for i in range(1, 106)])
    r = bob.react(cid, 2, HEART)
    assert r.status == 200 and r.json["reactions"] == counts((HEART, 1)), r
    assert alice.react(cid, 104, THUMBS).status == 200
    redis0, pg0 = pages("redis"), pages("postgres")
    old = history(bob, cid, before_seq=4, limit=3)  # 1..3, older than the tail (6..105)
    assert pages("postgres") == pg0 + 1 and pages("redis") == redis0
    assert old[2]["reactions"] == counts((HEART, 1)) and old[2]["my_reaction"] == HEART
    assert old[1]["reactions"] == [] and old[1]["my_reaction"] is None
    new = history(bob, cid, since_seq=100, limit=10)  # 101..105, in the tail
    assert pages("redis") == redis0 + 1
    assert new[104]["reactions"] == counts((THUMBS, 1)) and new[104]["my_reaction"] is None
    assert new[105]["reactions"] == [] and new[105]["my_reaction"] is None


# ---- refusals ----

def test_a_non_member_and_unknown_messages_are_not_found(alice, bob, commands):
    cid = conversation_with(commands, alice, [bob], ["hello"])
    eve = User()
    for r in (eve.react(cid, 1, THUMBS), eve.unreact(cid, 1),
              alice.react("c_nothing_here", 1, THUMBS)):
        assert (r.status, r.code) == (404, "not_found"), r
        assert r.json["error"]["message"] == "no such conversation"
        conforms(REACTION, "PUT", r)
    r = alice.react(cid, 2, THUMBS)  # no such seq_no (yet)
    assert (r.status, r.code, r.json["error"]["message"]) == (404, "not_found",
                                                             "no such message"), r
    conforms(REACTION, "PUT", r)
    assert alice.unreact(cid, 99).status == 404
    for seq in ("0", "01", "x", "1000000000000000"):  # not a seq_no
        r = call("PUT", f"/conversations/{cid}/messages/{seq}/reaction", {"emoji": THUMBS},
                 token=alice.token)
        assert (r.status, r.code) == (404, "not_found"), r
    r = alice.get(f"/conversations/{cid}/messages/1/reaction")
    assert (r.status, r.code) == (405, "method_not_allowed"), r
    r = call("PUT", f"/conversations/{cid}/messages/1/reaction", {"emoji": THUMBS})
    assert (r.status, r.code) == (401, "unauthenticated"), r
    # a former member may not react any more
    assert alice.delete(f"/conversations/{cid}/members/{bob.id}").status == 204
    r = bob.react(cid, 1, THUMBS)
    assert (r.status, r.code) == (404, "not_found"), r
    assert history(alice, cid)[1]["reactions"] == []


def test_a_bad_emoji_is_refused_before_anything_is_sent(alice, commands):
    cid = conversation_with(commands, alice, [], ["hello"])
    sent0 = metric(BASE, "kchat_api_commands_total")
    for emoji in ["", " ", "a b", "\U0001F44D\n", "\t", "\u2028", "\u00a0", "\u0085",
                  "a" * 17, THUMBS * 17, "\U0001F44D\U0001F3FB" * 9, None, 1, True, [THUMBS],
                  {"e": THUMBS}]:
        r = alice.react(cid, 1, emoji)
        assert (r.status, r.code) == (400, "invalid"), (emoji, r)
        assert "emoji" in r.json["error"]["message"]
        conforms(REACTION, "PUT", r)
    r = alice.put(f"/conversations/{cid}/messages/1/reaction", {"reaction": THUMBS})
    assert (r.status, r.code) == (400, "invalid"), r
    for raw, code in [(b'{"emoji":', "invalid_json"), (b'"x"', "invalid_json"),
                      (b"", "invalid_json"), (b'{"emoji":"\xff"}', "invalid_utf8"),
                      (b'{"emoji":"a\\u0000"}', "invalid_json")]:
        r = call("PUT", f"/conversations/{cid}/messages/1/reaction", raw=raw, token=alice.token,
                 headers={"Content-Type": "application/json"})
        assert (r.status, r.code) == (400, code), (raw, r)
        conforms(REACTION, "PUT", r)
    assert metric(BASE, "kchat_api_commands_total") == sent0
    # what passes: 16 characters, 64 bytes, a sequence joined by U+200D
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"
    for emoji in ["a" * 16, THUMBS * 16, family, "+1"]:
        r = alice.react(cid, 1, emoji)
        assert r.status == 200 and r.json["emoji"] == emoji, (emoji, r)
    assert history(alice, cid)[1]["reactions"] == counts(("+1", 1))


def test_a_deleted_message_loses_its_reactions_and_takes_no_more(alice, bob, commands, pg_api):
    cid = conversation_with(commands, alice, [bob], ["keep", "drop"])
    for u in (alice, bob):
        assert u.react(cid, 2, THUMBS).status == 200
    assert bob.react(cid, 1, HEART).status == 200
    r = alice.delete(f"/conversations/{cid}/messages/2")
    assert r.status == 200 and r.json["deleted_at"], r
    assert (r.json["reactions"], r.json["my_reaction"]) == ([], None)
    for u in (alice, bob):
        got = both_paths(u, cid, pg_api)
        assert got[2]["deleted_at"] and got[2]["content"] == ""
        assert (got[2]["reactions"], got[2]["my_reaction"]) == ([], None), got[2]
        assert got[1]["reactions"] == counts((HEART, 1))
    assert psql("SELECT count(*) FROM rm.reactions WHERE convo_id = $$%s$$ AND seq_no = 2"
                % cid) == [["0"]]
    for r in (bob.react(cid, 2, PARTY), bob.unreact(cid, 2)):
        assert (r.status, r.code) == (409, "deleted"), r
        conforms(REACTION, "PUT", r)
    assert both_paths(bob, cid, pg_api)[2]["reactions"] == []


def test_at_most_20_different_emojis_on_a_message(alice, commands):
    others = [User() for _ in range(20)]
    cid = conversation_with(commands, alice, others, ["popular"])
    emojis = [chr(0x1F600 + i) for i in range(21)]
    for u, e in zip(others, emojis):
        r = u.react(cid, 1, e)
        assert r.status == 200, r
    assert len(r.json["reactions"]) == 20
    # a 21st different one is refused; one already there is not
    r = alice.react(cid, 1, emojis[20])
    assert (r.status, r.code) == (409, "too_many_reactions"), r
    conforms(REACTION, "PUT", r)
    r = alice.react(cid, 1, emojis[3])
    assert r.status == 200, r
    assert r.json["reactions"][0] == {"emoji": emojis[3], "count": 2}
    assert len(r.json["reactions"]) == 20
    # who alone held one may trade it for a new one: still 20
    r = others[0].react(cid, 1, emojis[20])
    assert r.status == 200 and len(r.json["reactions"]) == 20, r
    assert {"emoji": emojis[0], "count": 1} not in r.json["reactions"]
    got = history(alice, cid)[1]
    assert got["reactions"] == r.json["reactions"] and got["my_reaction"] == emojis[3]


def test_a_message_older_than_the_edit_window_takes_no_reaction(alice, commands):
    """Needs a stack whose processor has a short window: run with KCHAT_EDIT_WINDOW_MS set
    (e.g. 3000) in the environment of scripts/test.sh, which the daemons inherit."""
    window = int(os.environ.get("KCHAT_EDIT_WINDOW_MS", "86400000"))
    if window > 20000:
        pytest.skip("the processor's edit window is longer than 20 s "
                    "(set KCHAT_EDIT_WINDOW_MS to run this)")
    cid = conversation_with(commands, alice, [], ["old soon"])
    assert alice.react(cid, 1, THUMBS).status == 200
    time.sleep(window / 1000 + 1)
    for r in (alice.react(cid, 1, HEART), alice.unreact(cid, 1)):
        assert (r.status, r.code) == (409, "too_old"), r
        conforms(REACTION, "PUT", r)
    assert history(alice, cid)[1]["reactions"] == counts((THUMBS, 1))
