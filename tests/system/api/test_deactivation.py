"""Changing one's username and deactivating one's account, as a client and as analytics see
them: the new name logs in and the old one is free, a taken name is refused; a deactivation
needs the password, then the account's sockets close, its access and refresh tokens are
refused, its login is refused once the password is right, it is no longer suggested to
others, and chat.accounts says UsernameChanged and UserDeactivated. An operator's
deactivation in SQL does the same, and an API instance started after it refuses the token."""
import asyncio
import json

import pytest
import websockets

from kchat_testkit.api import User, api_instance, call, conforms, unique_name
from kchat_testkit.gateway import ws_url
from kchat_testkit.http import wait_until
from kchat_testkit.stack import ENV, psql
from kchat_testkit.wire import body, read_topic

TOPIC = "chat.accounts"


def account_events(user_id, n):
    """The user's first n account events, a copy sent again (at least once) dropped."""
    key = user_id.encode()

    def unique(got):
        seen = {}
        for _, v in got:
            seen.setdefault(v["event_no"], v)
        return list(seen.values())
    got = read_topic(ENV["KCHAT_KAFKA_BROKERS"], TOPIC, lambda k, v, m: k == key,
                     lambda g: len(unique(g)) >= n)
    values = unique(got)
    assert len(values) >= n, got
    return values


def test_a_new_username_logs_in_and_frees_the_old_one():
    u, other = User(), User()
    old, new = u.name, unique_name("renamed")
    r = u.patch("/users/me", {"username": new})
    assert r.status == 200, r
    conforms("/users/me", "PATCH", r)
    assert r.json["username"] == new and r.json["deactivated"] is False
    # the same name in another case is the caller's own: allowed, and it is the new spelling
    r = u.patch("/users/me", {"username": new.upper(), "display_name": "Renamed"})
    assert r.status == 200 and r.json["username"] == new.upper(), r
    assert r.json["display_name"] == "Renamed"
    # someone else's name, in any case, is taken; bad names and bodies are refused
    r = u.patch("/users/me", {"username": other.name.upper()})
    assert r.status == 409 and r.code == "username_taken", r
    conforms("/users/me", "PATCH", r)
    for bad, code in (({"username": "a b"}, "invalid_username"),
                      ({"username": ""}, "invalid_username"),
                      ({"username": 7}, "invalid_request"),
                      ({}, "invalid_request")):
        r = u.patch("/users/me", bad)
        assert r.status == 400 and r.code == code, (bad, r)
    assert call("POST", "/auth/login", {"username": new, "password": u.password}).status == 200
    assert call("POST", "/auth/login", {"username": old, "password": u.password}).status == 401
    assert call("GET", f"/users?username={new}", token=other.token).json["user_id"] == u.id
    # the old name is free for anyone now
    assert call("POST", "/auth/register", {"username": old, "password": "another password"}
                ).status == 201
    values = account_events(u.id, 4)
    assert [body(v) for v in values] == [
        ("UserRegistered", {"username": old}),
        ("UsernameChanged", {"username": new, "previous": old}),
        ("UsernameChanged", {"username": new.upper(), "previous": new}),
        ("DisplayNameChanged", {"display_name": "Renamed", "previous": ""})]


async def closed_code(ws):
    """The close code the server sends on ws, reading what comes before it."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    except websockets.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


def handshake_status(token):
    async def go():
        try:
            ws = await websockets.connect(ws_url(), additional_headers={
                "Authorization": "Bearer " + token})
        except websockets.InvalidStatus as e:
            return e.response.status_code, json.loads(e.response.body)["error"]["code"]
        await ws.close()
        return 101, None
    return asyncio.run(go())


def test_a_deactivated_account_is_shut_out_everywhere():
    u, peer = User(), User()
    assert u.patch("/users/me", {"display_name": "Soon Gone"}).status == 200
    prefix = u.name

    async def scenario():
        ws = await websockets.connect(ws_url(), additional_headers={
            "Authorization": "Bearer " + u.token})
        # a wrong password changes nothing
        r = u.post("/users/me/deactivate", {"password": "not the password"})
        assert r.status == 403 and r.code == "wrong_password", r
        conforms("/users/me/deactivate", "POST", r)
        r = u.post("/users/me/deactivate", {})
        assert r.status == 400 and r.code == "invalid_request", r
        assert u.get("/users/me").status == 200
        r = u.post("/users/me/deactivate", {"password": u.password})
        assert r.status == 204, r
        conforms("/users/me/deactivate", "POST", r)
        return await closed_code(ws)

    assert asyncio.run(scenario()) == 4003
    wait_until(lambda: u.get("/users/me").code == "token_revoked", "the access token refused")
    r = u.get("/conversations")
    assert r.status == 401 and r.code == "token_revoked", r
    assert handshake_status(u.token) == (401, "token_revoked")
    r = call("POST", "/auth/refresh", {"refresh_token": u.refresh_token})
    assert r.status == 401 and r.code == "refresh_token_invalid", r
    r = call("POST", "/auth/login", {"username": u.name, "password": u.password})
    assert r.status == 403 and r.code == "account_deactivated", r
    conforms("/auth/login", "POST", r)
    r = call("POST", "/auth/login", {"username": u.name, "password": "a wrong password"})
    assert r.status == 401 and r.code == "invalid_credentials", r  # tells nothing more
    assert psql(f"SELECT count(*) FROM refresh_tokens WHERE user_id = '{u.id}' "
                "AND revoked_at IS NULL") == [["0"]]
    # others still see who wrote the account's messages, but are not offered it
    r = peer.get(f"/users/{u.id}")
    assert r.status == 200 and r.json["deactivated"] is True, r
    found = peer.get(f"/users?prefix={prefix}").json["users"]
    assert u.id not in [x["user_id"] for x in found]
    # the name stays the account's
    r = call("POST", "/auth/register", {"username": u.name, "password": "another password"})
    assert r.status == 409 and r.code == "username_taken", r
    values = account_events(u.id, 3)
    assert [body(v) for v in values] == [
        ("UserRegistered", {"username": u.name}),
        ("DisplayNameChanged", {"display_name": "Soon Gone", "previous": ""}),
        ("UserDeactivated", {"username": u.name})]
    assert values[2]["type"] == "UserDeactivated" and values[2]["actor_id"] == u.id
    # the trigger recorded it in the audit log, with where the request came from
    (action, actor, source), = psql(f"SELECT action, actor_id, source FROM audit_log "
                                    f"WHERE target = '{u.id}' AND action = 'account_deactivated'")
    assert (action, actor, source) == ("account_deactivated", u.id, "127.0.0.1")


@pytest.mark.parametrize("started_after", [False, True], ids=["running", "started-after"])
def test_an_operators_deactivation_in_sql_takes_effect_too(started_after):
    """The trigger does the work, whoever writes deactivated_at: an API instance running
    hears of it, and one started after it finds it when it loads the set."""
    u = User()
    before = u.refresh_token
    if not started_after:
        psql(f"BEGIN; SELECT set_config('kchat.actor', 'u_operator', true); "
             f"UPDATE users SET deactivated_at = now() WHERE user_id = '{u.id}'; COMMIT;")
        wait_until(lambda: u.get("/users/me").code == "token_revoked",
                   "the running API refusing the token")
    else:
        psql(f"UPDATE users SET deactivated_at = now() WHERE user_id = '{u.id}'")
        daemon, base = api_instance()
        try:
            wait_until(lambda: call("GET", "/users/me", token=u.token, base=base).code
                       == "token_revoked", "the new API refusing the token")
        finally:
            daemon.stop()
    r = call("POST", "/auth/refresh", {"refresh_token": before})
    assert r.status == 401, r
    last = account_events(u.id, 2)[-1]
    assert body(last) == ("UserDeactivated", {"username": u.name})
    actor = "u_operator" if not started_after else u.id
    assert last["actor_id"] == actor
    (who, source), = psql(f"SELECT actor_id, source FROM audit_log WHERE target = '{u.id}' "
                          "AND action = 'account_deactivated'")
    assert who == actor and source.startswith("postgres:"), (who, source)
