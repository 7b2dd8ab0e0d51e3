"""The audit log: security-relevant actions recorded with who, what, when and from where,
read by kchat's admins alone through GET /admin/audit (itself recorded), and relayed to
chat.audit, where fastavro reads them by the schema id in each record."""
import hashlib
import json
import random

from cryptography.hazmat.primitives import serialization

from kchat_testkit.api import User, api_instance, call, conforms, send_all, wait_last_seq
from kchat_testkit.http import wait_until
from kchat_testkit.stack import ENV, psql
from kchat_testkit.wire import read_topic

TOPIC = "chat.audit"


def addr():
    """A client address of the test's own (198.18.0.0/15), given through X-Forwarded-For, which
    the stack's API takes from a proxy on 127.0.0.1: the login throttle's counts live in Redis,
    shared by every test."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def login(user, password, client, **headers):
    return call("POST", "/auth/login", {"username": user, "password": password},
                headers={"X-Forwarded-For": client, **headers})


def make_admin(user, actor="u_operator"):
    psql(f"BEGIN; SELECT set_config('kchat.actor', '{actor}', true); "
         f"UPDATE users SET is_admin = true WHERE user_id = '{user.id}'; COMMIT;")


def audit(admin, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = admin.get(f"/admin/audit?{q}")
    assert r.status == 200, r
    conforms("/admin/audit", "GET", r)
    return r.json


def events(admin, **query):
    return audit(admin, **query)["events"]


def test_logins_failed_logins_and_reuse_are_recorded_with_where_from():
    admin, u = User(), User()
    make_admin(admin)
    client = addr()
    assert login(u.name, u.password, client, **{"User-Agent": "audit-test/1.0"}).status == 200
    # a User-Agent of latin-1 bytes is not UTF-8: recorded as such
    assert login(u.name, "wrong password", client,
                 **{"User-Agent": "audit-test/1.0 (\u00e9t\u00e9)"}).status == 401
    ghost = f"ghost_{u.id[-8:]}"
    assert login(ghost, "whatever it is", client).status == 401
    # a refresh token used twice revokes its family, and says so
    old = u.refresh_token
    assert call("POST", "/auth/refresh", {"refresh_token": old}).status == 200
    assert call("POST", "/auth/refresh", {"refresh_token": old}).code == "refresh_token_reused"

    wait_until(lambda: len(events(admin, target=u.id)) >= 4, "the user's audit events")
    got = events(admin, target=u.id)
    assert sorted(e["action"] for e in got) == ["login", "login", "login_failed",
                                                "refresh_token_reused"], got
    by = {e["action"]: e for e in reversed(got)}  # the newest of each
    login_ev = next(e for e in got if e["action"] == "login" and e["source"] == client)
    assert login_ev["actor_id"] == u.id, login_ev
    assert login_ev["detail"] == {"user_agent": "audit-test/1.0"}, login_ev
    failed = by["login_failed"]
    assert failed["actor_id"] is None and failed["source"] == client, failed
    assert failed["detail"] == {"user_agent": "(not UTF-8)", "username": u.name}, failed
    assert by["refresh_token_reused"]["detail"]["family_id"], by
    # a username that does not exist names no account
    def unknown():
        return [e for e in events(admin, action="login_failed", limit=500)
                if e["detail"].get("username") == ghost]
    wait_until(unknown, "the failed login of an unknown username")
    unknown = unknown()
    assert len(unknown) == 1 and unknown[0]["target"] is None, unknown
    assert unknown[0]["source"] == client


def test_only_admins_read_it_and_each_read_is_recorded():
    admin, plain = User(), User()
    r = plain.get("/admin/audit?action=login")
    assert r.status == 403 and r.code == "not_admin", r
    conforms("/admin/audit", "GET", r)
    assert call("GET", "/admin/audit").status == 401
    make_admin(admin, actor=plain.id)
    granted = events(admin, target=admin.id, action="admin_granted")
    assert len(granted) == 1, granted
    assert granted[0]["actor_id"] == plain.id and granted[0]["source"].startswith("postgres:")
    # the refused read is recorded, with what it asked for
    wait_until(lambda: [e for e in events(admin, actor_id=plain.id, action="audit_read_denied")
                        if e["detail"] == {"action": "login"}], "the refused read recorded")
    # the read above, with its filters (the reads that look for it are recorded too)
    wait_until(lambda: {"target": admin.id, "action": "admin_granted"} in [
        e["detail"] for e in events(admin, actor_id=admin.id, action="audit_read")],
        "the read recorded")
    for bad in ("since=yesterday", "until=2026-13-45", "since=2026-01-01T25:00:00Z",
                "limit=0", "limit=501", "before=x", "action=" + "a" * 65):
        r = admin.get(f"/admin/audit?{bad}")
        assert r.status == 400 and r.code == "invalid_query", (bad, r)
    # an admin whose account ends reads no more
    psql(f"UPDATE users SET is_admin = false WHERE user_id = '{admin.id}'")
    assert admin.get("/admin/audit").code == "not_admin"
    revoked = psql(f"SELECT count(*) FROM audit_log WHERE action = 'admin_revoked' "
                   f"AND target = '{admin.id}'")
    assert revoked == [["1"]]


def test_pages_by_before_and_a_time_window():
    admin, u = User(), User()
    make_admin(admin)
    for _ in range(5):  # each from another address: never throttled
        assert login(u.name, "wrong one!", addr()).status == 401
    # each row is written after its answer: all five are in a moment later
    wait_until(lambda: len(events(admin, target=u.id, action="login_failed")) == 5,
               "five failed logins recorded")
    first = audit(admin, target=u.id, action="login_failed", limit=2)
    assert len(first["events"]) == 2 and first["next_before"], first
    second = audit(admin, target=u.id, action="login_failed", limit=2,
                   before=first["next_before"])
    third = audit(admin, target=u.id, action="login_failed", limit=2,
                  before=second["next_before"])
    nos = [e["audit_no"] for page in (first, second, third) for e in page["events"]]
    assert len(nos) == 5 and nos == sorted(nos, reverse=True), nos
    assert third["next_before"] is None
    at = first["events"][0]["occurred_at"]
    assert events(admin, target=u.id, action="login_failed", since=at) == first["events"][:1]
    assert len(events(admin, target=u.id, action="login_failed", until=at)) == 4


def test_the_signing_key_is_recorded_once_by_its_fingerprint():
    admin = User()
    make_admin(admin)
    with open(ENV["KCHAT_JWT_PUBLIC_KEY"], "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = hashlib.sha256(der).hexdigest()
    wait_until(lambda: events(admin, action="signing_key_added", target=fingerprint),
               "the key recorded")
    got = events(admin, action="signing_key_added", target=fingerprint)
    assert len(got) == 1 and got[0]["source"].startswith("api:"), got
    assert psql(f"SELECT count(*) FROM signing_keys WHERE fingerprint = '{fingerprint}'"
                ) == [["1"]]


def test_every_event_reaches_chat_audit_keyed_by_its_actor():
    u = User()
    client = addr()
    assert login(u.name, "wrong again", client).status == 401
    logins = read_topic(ENV["KCHAT_KAFKA_BROKERS"], TOPIC,
                        lambda k, v, m: v["target"] == u.id, lambda g: len(g) >= 2)
    by_action = {v["action"]: (m, v) for m, v in logins}
    assert set(by_action) >= {"login", "login_failed"}, by_action
    m, v = by_action["login"]
    assert m.key() == u.id.encode() and v["actor_id"] == u.id
    assert "user_agent" in json.loads(v["detail"])
    m, v = by_action["login_failed"]
    assert v["actor_id"] is None and v["source"] == client and m.key() == client.encode(), v
    assert json.loads(v["detail"])["username"] == u.name
    wait_until(lambda: psql(f"SELECT count(*) FROM audit_log WHERE target = '{u.id}' "
                            "AND NOT relayed") == [["0"]], "the rows marked relayed")


def test_rows_past_their_retention_go_once_relayed():
    """An instance with --audit-retention-days=1 prunes, soon after it starts, the relayed rows
    older than a day; a newer one stays."""
    rows = psql("INSERT INTO audit_log (action, source, occurred_at, relayed) VALUES "
                "('login_failed', 'retention-test', now() - interval '2 days', true), "
                "('login_failed', 'retention-test', now() - interval '2 hours', true) "
                "RETURNING audit_no")
    old, new = (int(r[0]) for r in rows)
    daemon, _ = api_instance("--audit-retention-days=1", "--instance-id=retention")
    try:
        wait_until(lambda: psql(f"SELECT count(*) FROM audit_log WHERE audit_no = {old}")
                   == [["0"]], "the old row pruned")
        assert psql(f"SELECT count(*) FROM audit_log WHERE audit_no = {new}") == [["1"]]
    finally:
        daemon.stop()
        psql("DELETE FROM audit_log WHERE source = 'retention-test'")


def test_membership_roles_and_deletes_by_others_are_recorded_by_the_projector(commands):
    """Membership and role changes and the deletes of an owner or admin are events of
    chat.events: the projector writes their rows in the transaction that applies them, with
    the command's origin (the API instance or gateway slot) as the source. A member's own
    deletes, and the members a conversation is created with, are not audited."""
    admin, owner, mod, a, b = User(), User(), User(), User(), User()
    make_admin(admin)
    r = owner.post("/conversations", {"title": "audited", "members": [mod.id, a.id]})
    assert r.status == 201, r
    cid = r.json["id"]
    assert owner.patch(f"/conversations/{cid}/members/{mod.id}", {"role": "admin"}).status == 200
    assert mod.post(f"/conversations/{cid}/members", {"members": [b.id]}).status == 200
    send_all(commands, cid, a, ["mine to delete", "theirs to delete"])
    wait_last_seq(owner, cid, 2)
    assert a.delete(f"/conversations/{cid}/messages/1").status == 200
    assert mod.delete(f"/conversations/{cid}/messages/2").status == 200
    assert mod.delete(f"/conversations/{cid}/members/{a.id}").status == 204
    assert b.delete(f"/conversations/{cid}/members/{b.id}").status == 204
    # the last owner leaving makes the oldest admin owner
    assert owner.delete(f"/conversations/{cid}/members/{owner.id}").status == 204

    def rows(who):
        return [(e["action"], e["actor_id"], e["detail"])
                for e in reversed(events(admin, target=who.id))
                if e["action"] != "login"]
    want = {
        mod: [("role_changed", owner.id, {"convo_id": cid, "role": "admin"}),
              ("role_changed", owner.id, {"convo_id": cid, "role": "owner"})],
        a: [("message_deleted", mod.id, {"convo_id": cid, "seq_no": 2, "author_id": a.id}),
            ("member_removed", mod.id, {"convo_id": cid})],
        b: [("member_added", mod.id, {"convo_id": cid, "role": "member"}),
            ("member_left", b.id, {"convo_id": cid})],
        owner: [("member_left", owner.id, {"convo_id": cid})],
    }
    for who, expected in want.items():
        wait_until(lambda: len(rows(who)) >= len(expected), "the projector's audit rows")
        assert rows(who) == expected, (who.name, rows(who))
    got = [e for e in events(admin, target=a.id) + events(admin, target=mod.id)
           if e["action"] != "login"]
    assert all(e["source"].startswith("api:") for e in got), got
    # the event's time, not the projector's
    occurred = {e["action"]: e["occurred_at"] for e in events(admin, target=b.id)}
    assert occurred["member_added"] <= occurred["member_left"], occurred
    # one row per event and member, under an id derived from the event's
    ids = [r[0] for r in psql("SELECT event_id FROM audit_log WHERE detail->>'convo_id' = "
                              f"'{cid}' ORDER BY audit_no")]
    assert len(ids) == len(set(ids)) == 7, ids
    assert ids[0].endswith(f":{mod.id}"), ids
