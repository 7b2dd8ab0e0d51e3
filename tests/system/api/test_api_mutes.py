"""Muting a conversation (PUT and DELETE /conversations/{id}/mute): a member's own setting,
for a while or until unmuted, shown in every conversation body for that member only, never
for anyone else; non-members get the conversation's 404."""
import calendar
import time

from kchat_testkit.api import User, conforms
from kchat_testkit.stack import psql


def muted(user, convo):
    """(muted, muted_until) as the conversation and the list (Redis path) say it."""
    one = user.get(f"/conversations/{convo}")
    conforms("/conversations/{id}", "GET", one)
    listed = [c for c in user.get("/conversations").json["conversations"] if c["id"] == convo]
    assert len(listed) == 1
    got = (one.json["muted"], one.json["muted_until"])
    assert (listed[0]["muted"], listed[0]["muted_until"]) == got, (listed[0], got)
    return got


def test_mute_for_a_while_until_unmuted_and_only_for_oneself():
    ann, bob, eve = User(), User(), User()
    r = ann.post("/conversations", {"title": "noisy", "members": [bob.id]})
    assert r.status == 201, r
    convo = r.json["id"]
    assert muted(ann, convo) == (False, None)
    # until unmuted
    r = ann.put(f"/conversations/{convo}/mute", {})
    conforms("/conversations/{id}/mute", "PUT", r)
    assert (r.status, r.json) == (200, {"muted": True, "muted_until": None}), r
    assert muted(ann, convo) == (True, None)
    assert muted(bob, convo) == (False, None)  # bob's is his own
    # for an hour: a time about an hour ahead
    r = ann.put(f"/conversations/{convo}/mute", {"for_s": 3600})
    assert r.status == 200 and r.json["muted"] and r.json["muted_until"], r
    until = calendar.timegm(time.strptime(r.json["muted_until"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert 3500 < until - time.time() < 3700, r.json
    assert muted(ann, convo) == (True, r.json["muted_until"])
    # a mute that ran out is no mute
    psql(f"UPDATE mutes SET muted_until = now() - interval '1 second' "
         f"WHERE convo_id = '{convo}' AND user_id = '{ann.id}'")
    assert muted(ann, convo) == (False, None)
    # unmute, twice
    for _ in range(2):
        r = ann.delete(f"/conversations/{convo}/mute")
        conforms("/conversations/{id}/mute", "DELETE", r)
        assert (r.status, r.json) == (200, {"muted": False, "muted_until": None}), r
    # refusals
    for body in [{"for_s": 0}, {"for_s": -5}, {"for_s": 1.5}, {"for_s": "60"},
                 {"for_s": 31536001}, {"for_s": True}]:
        r = ann.put(f"/conversations/{convo}/mute", body)
        assert (r.status, r.code) == (400, "invalid_request"), (body, r)
    for r in (eve.put(f"/conversations/{convo}/mute", {}),
              eve.delete(f"/conversations/{convo}/mute"),
              ann.put("/conversations/c_nosuchthing/mute", {})):
        assert (r.status, r.code) == (404, "not_found"), r
    assert psql(f"SELECT count(*) FROM mutes WHERE user_id = '{eve.id}'") == [["0"]]
