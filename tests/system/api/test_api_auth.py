"""kchat-api's accounts and tokens against the live stack: register, login, refresh rotation,
reuse revoking a family, bearer checks, hostile input and the metrics they leave."""
import json
import threading
import time

import jwt

from kchat_testkit.api import (BASE, User, api_instance, call, private_key_pem, public_key_pem,
                               unique_name)
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.stack import psql


def count_users():
    return int(psql("SELECT count(*) FROM users")[0][0])


def test_register_and_login():
    name = unique_name("alice")
    r = call("POST", "/auth/register", {"username": name, "password": "correct horse"})
    assert r.status == 201, r
    assert set(r.json) >= {"user_id", "username"}
    assert r.json["username"] == name
    assert r.json["user_id"].startswith("u_") and len(r.json["user_id"]) == 28
    # stored as Argon2id, never in the clear
    rows = psql("SELECT password_hash FROM credentials WHERE user_id = $$" + r.json["user_id"] + "$$")
    assert rows[0][0].startswith("$argon2id$") and "correct horse" not in rows[0][0]

    r2 = call("POST", "/auth/login", {"username": name, "password": "correct horse"})
    assert r2.status == 200, r2
    assert set(r2.json) >= {"access_token", "refresh_token", "expires_in", "user_id"}
    assert r2.json["user_id"] == r.json["user_id"]
    assert r2.json["expires_in"] == 900
    claims = jwt.decode(r2.json["access_token"], public_key_pem(), algorithms=["RS256"],
                        audience="kchat", issuer="kchat")
    assert claims["sub"] == r.json["user_id"] and claims["name"] == name
    assert claims["exp"] - claims["iat"] == 900


def test_register_refuses_a_taken_name_and_bad_input():
    u = User()
    before = count_users()
    r = call("POST", "/auth/register", {"username": u.name, "password": "another password"})
    assert (r.status, r.code) == (409, "username_taken")
    for name in ["", "x" * 65, "has space", "tab\tname", "semi;colon", "quote'name",
                 "alice'; DROP TABLE users; --", "ctl\u0085name", "new\nline", "é" * 33]:
        r = call("POST", "/auth/register", {"username": name, "password": "long enough"})
        assert (r.status, r.code) == (400, "invalid_username"), (name, r)
    for pw in ["", "short", "x" * 1025]:
        r = call("POST", "/auth/register", {"username": unique_name(), "password": pw})
        assert (r.status, r.code) == (400, "invalid_password"), r
    for body in [{}, {"username": "x"}, {"password": "long enough"},
                 {"username": 5, "password": "long enough"},
                 {"username": "abc", "password": ["long enough"]}]:
        r = call("POST", "/auth/register", body)
        assert (r.status, r.code) == (400, "invalid_request"), (body, r)
    assert count_users() == before
    # UTF-8 names are fine, and 64 bytes is the limit
    ok = "é" * 32
    r = call("POST", "/auth/register", {"username": ok + "", "password": "long enough"})
    assert r.status in (201, 409), r


def test_login_failures_look_the_same():
    u = User()
    wrong = call("POST", "/auth/login", {"username": u.name, "password": "not the password"})
    unknown = call("POST", "/auth/login", {"username": unique_name("nobody"),
                                           "password": "not the password"})
    invalid = call("POST", "/auth/login", {"username": "bad name", "password": "x"})
    for r in (wrong, unknown, invalid):
        assert (r.status, r.code) == (401, "invalid_credentials"), r
        assert r.json == wrong.json


def test_refresh_rotates_and_reuse_revokes_the_family():
    u = User()
    first = u.refresh_token
    r = call("POST", "/auth/refresh", {"refresh_token": first})
    assert r.status == 200, r
    second = r.json["refresh_token"]
    assert second != first and r.json["user_id"] == u.id
    # the new access token works
    claims = jwt.decode(r.json["access_token"], public_key_pem(), algorithms=["RS256"],
                        audience="kchat")
    assert claims["sub"] == u.id
    r = call("POST", "/auth/refresh", {"refresh_token": second})
    assert r.status == 200, r
    third = r.json["refresh_token"]

    # another login of the same user is another family
    other = call("POST", "/auth/login", {"username": u.name, "password": u.password}).json
    # replaying an already rotated token: refused, and the whole family is revoked
    r = call("POST", "/auth/refresh", {"refresh_token": first})
    assert (r.status, r.code) == (401, "refresh_token_reused"), r
    r = call("POST", "/auth/refresh", {"refresh_token": third})
    assert (r.status, r.code) == (401, "refresh_token_invalid"), r
    # the other family lives on
    r = call("POST", "/auth/refresh", {"refresh_token": other["refresh_token"]})
    assert r.status == 200, r
    fam = psql("SELECT count(DISTINCT family_id), count(*) FILTER (WHERE revoked_at IS NOT NULL) "
               "FROM refresh_tokens WHERE user_id = $$" + u.id + "$$")
    assert fam[0][0] == "2"  # the first login's (revoked) and the other login's


def test_concurrent_refreshes_with_one_token_give_one_winner():
    u = User()
    results = []

    def go():
        results.append(call("POST", "/auth/refresh", {"refresh_token": u.refresh_token}))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [r for r in results if r.status == 200]
    assert len(ok) == 1, results
    assert all(r.status == 401 for r in results if r.status != 200)
    # the winner's token was revoked with its family by the losers' reuse
    r = call("POST", "/auth/refresh", {"refresh_token": ok[0].json["refresh_token"]})
    assert r.status == 401, r


def test_bad_refresh_tokens():
    for tok in ["", "rt_", "rt_" + "A" * 43, "x" * 46, "rt_" + "!" * 43, "rt_" + "A" * 5000]:
        r = call("POST", "/auth/refresh", {"refresh_token": tok})
        assert r.status == 401 and r.code == "refresh_token_invalid", (tok[:10], r)
    r = call("POST", "/auth/refresh", {"refresh_token": 12})
    assert (r.status, r.code) == (400, "invalid_request")


def forge(claims, key=None, alg="RS256", headers=None):
    return jwt.encode(claims, key or private_key_pem(), algorithm=alg, headers=headers)


def test_bearer_tokens_are_checked():
    u = User()
    now = int(time.time())
    good = {"sub": u.id, "iss": "kchat", "aud": "kchat", "iat": now, "nbf": now, "exp": now + 60}
    assert call("GET", "/conversations").status == 401
    cases = {
        "no header": (None, {}, "unauthenticated"),
        "basic": (None, {"Authorization": "Basic dXNlcjpwYXNz"}, "unauthenticated"),
        "garbage": ("not.a.token", {}, None),
        "expired": (forge(good | {"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}), {},
                    "token_expired"),
        "wrong audience": (forge(good | {"aud": "other"}), {}, "token_wrong_audience"),
        "hs256": (forge(good, key="a-shared-secret-of-32-bytes-or-more", alg="HS256"), {},
                                      "token_algorithm_refused"),
        "none": (jwt.encode(good, None, algorithm="none"), {}, "token_algorithm_refused"),
        "huge": ("a" * 5000, {}, None),
    }
    for what, (tok, headers, code) in cases.items():
        r = call("GET", "/conversations", token=tok, headers=headers)
        assert r.status == 401, (what, r)
        assert r.code and (code is None or r.code == code), (what, r)
    # a well-signed token of our own is accepted
    r = call("GET", "/conversations", token=forge(good))
    assert r.status != 401, r


def test_hostile_bodies_get_clear_4xx_and_change_nothing():
    before = count_users()
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        (b'"a string"', 400, "invalid_json"),
        (b'{"username":"a","password":"longenough"} trailing', 400, "invalid_json"),
        (b'{"username":"\xff\xfe","password":"longenough"}', 400, "invalid_utf8"),
        (b'{"username":"ab\xc0\xafcd","password":"longenough"}', 400, "invalid_utf8"),
        (b'{"username":"a\\u0000b","password":"longenough"}', 400, "invalid_json"),
        (b"[" * 100000, 413, "payload_too_large"),
        (b'{"username":"' + b"a" * 70000 + b'","password":"x"}', 413, "payload_too_large"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, 400, "invalid_json"),
    ]
    for raw, status, code in cases:
        r = call("POST", "/auth/register", raw=raw, headers={"Content-Type": "application/json"})
        assert r.status == status, (raw[:40], r)
        assert r.json and "error" in r.json and "message" in r.json["error"], r
        if code:
            assert r.code == code, (raw[:40], r)
    assert count_users() == before


def test_unknown_paths_and_methods():
    r = call("GET", "/nope")
    assert (r.status, r.code) == (404, "not_found")
    r = call("DELETE", "/auth/login")
    assert (r.status, r.code) == (405, "method_not_allowed")
    r = call("GET", "/auth/login")
    assert (r.status, r.code) == (405, "method_not_allowed")


def test_metrics_count_routes_and_statuses():
    call("POST", "/auth/login", {"username": "bad name", "password": "x"})
    status, _, body = http_get(BASE + "/metrics")
    assert status == 200
    text = body.decode()
    assert 'kchat_api_http_requests_total{route="/auth/login",status="401"}' in text
    assert 'kchat_api_http_request_duration_seconds_bucket{route="/auth/login",le="+Inf"}' in text
    assert "kchat_api_pwhash_inflight" in text
    status, _, body = http_get(BASE + "/health")
    assert status == 200


def test_password_hashing_is_bounded_and_off_the_loop():
    """With one hash allowed in flight and none waiting, a second login while a slow hash
    runs is told 503 busy at once, and the loop keeps serving (/health, other routes)
    meanwhile."""
    p, base = api_instance("--pwhash-max-inflight=1", "--pwhash-queue-max=0",
                           "--pwhash-opslimit=10", "--pwhash-memlimit-kib=131072")
    try:
        slow = []
        t = threading.Thread(target=lambda: slow.append(http_get(
            base + "/auth/register", method="POST", timeout=120,
            data=json.dumps({"username": unique_name("slow"), "password": "long enough"}).encode())))
        t.start()
        wait_until(lambda: "kchat_api_pwhash_inflight 1" in http_get(base + "/metrics")[2].decode(),
                   "a hash in flight")
        status, _, body = http_get(base + "/auth/register", method="POST", data=json.dumps(
            {"username": unique_name("second"), "password": "long enough"}).encode())
        busy_seen_while_hashing = "kchat_api_pwhash_inflight 1" in \
            http_get(base + "/metrics")[2].decode()
        assert http_get(base + "/health")[0] == 200
        assert http_get(base + "/nope")[0] == 404
        t.join(120)
        assert slow[0][0] == 201, slow
        # the slow hash (seconds at opslimit 10) was running before and after the second ask
        assert busy_seen_while_hashing
        assert status == 503 and json.loads(body)["error"]["code"] == "busy", body
    finally:
        p.terminate()
        p.wait(30)
