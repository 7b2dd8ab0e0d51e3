"""kchat-api's people: GET /users?username= (by the name's key: case and width do not
matter), GET /users/{id} and the people picker's GET /users?prefix=, all behind an access
token; usernames that would look alike; display names (PATCH /users/me); and the
member_names of conversations (Postgres and Redis read paths)."""
import urllib.parse
import uuid

import pytest

from kchat_testkit.api import User, api_instance, call, unique_name
from kchat_testkit.http import http_get
from kchat_testkit.stack import psql


def find(user, name):
    return user.get("/users?username=" + urllib.parse.quote(name, safe=""))


def test_find_by_username(alice, bob):
    r = find(alice, bob.name)
    assert r.status == 200, r
    assert r.json == {"user_id": bob.id, "username": bob.name, "display_name": "",
                      "deactivated": False}
    assert r.headers.get("Cache-Control") == "no-store"
    assert find(bob, bob.name).json["user_id"] == bob.id  # oneself too


def test_find_non_ascii_username(alice):
    u = User(name="zoë_" + uuid.uuid4().hex[:8])
    r = find(alice, u.name)
    assert r.status == 200, r
    assert r.json == {"user_id": u.id, "username": u.name, "display_name": "", "deactivated": False}


def test_find_ignores_only_case_and_width(alice, bob):
    for same in [bob.name.upper(), bob.name.title()]:
        r = find(alice, same)
        assert r.json == {"user_id": bob.id, "username": bob.name, "display_name": "",
                          "deactivated": False}, (same, r)
    for near in [bob.name[:-1], bob.name + "x", bob.name[:5]]:
        r = find(alice, near)
        assert r.status == 404, (near, r)
        assert r.code == "not_found"


def full_width(s):
    """ASCII letters and digits as their full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c.isalnum() else c for c in s)


def test_look_alike_usernames_are_one_username(alice):
    """RFC 8265's UsernameCaseMapped: case, full-width forms and NFC/NFD spellings do not
    make another username; the name is kept as its owner registered it."""
    tag = uuid.uuid4().hex[:8]
    first = User(name=f"CaseX_{tag}")
    for twin in [f"casex_{tag}", f"CASEX_{tag.upper()}", full_width(f"casex_{tag}")]:
        r = call("POST", "/auth/register", {"username": twin, "password": "long enough"})
        assert (r.status, r.code) == (409, "username_taken"), (twin, r)
        assert find(alice, twin).json == {"user_id": first.id, "username": first.name,
                                          "display_name": "", "deactivated": False}
    # any spelling logs in; the token names the user as registered
    r = call("POST", "/auth/login", {"username": f"CASEX_{tag}", "password": first.password})
    assert r.status == 200, r
    assert r.json["username"] == first.name
    # é as one code point, then as e and a combining accent: one name, stored in NFC
    nfc = User(name=f"Ren\u00e9_{tag}")
    r = call("POST", "/auth/register", {"username": f"Rene\u0301_{tag}",
                                         "password": "long enough"})
    assert (r.status, r.code) == (409, "username_taken"), r
    assert find(alice, f"rene\u0301_{tag}").json["user_id"] == nfc.id
    nfd = call("POST", "/auth/register", {"username": f"Zoe\u0308_{tag}",
                                           "password": "long enough"})
    assert nfd.status == 201 and nfd.json["username"] == f"Zo\u00eb_{tag}", nfd


@pytest.mark.parametrize("name", [
    "zero\u200bwidth", "joiner\u200d", "\ufeffbom", "over\u202eride", "iso\u2066late",
    "\u0301\u0301", "\u0301lead", "ann\u00a0b", "snow\u2603", "priv\ue000",
    "abc\u05e9\u05dc",
])
def test_invisible_and_direction_changing_usernames_are_refused(name):
    r = call("POST", "/auth/register", {"username": name, "password": "long enough"})
    assert (r.status, r.code) == (400, "invalid_username"), (name, r)
    assert r.json["error"]["message"]


def test_unknown_username_is_404(alice):
    r = find(alice, unique_name("nobody"))
    assert r.status == 404, r
    assert r.code == "not_found" and r.json["error"]["message"]


@pytest.mark.parametrize("value", ["", "a b", "a/b", "x" * 65, "semi;colon", "\u0085x",
                                   "' OR '1'='1", "x'; DROP TABLE users; --", "%", "a\"b"])
def test_bad_username_values_are_400(alice, value):
    r = find(alice, value)
    assert r.status == 400, (value, r)
    assert r.code == "invalid_username"
    assert r.json["error"]["message"]


def test_missing_username_is_400(alice):
    r = alice.get("/users")
    assert r.status == 400, r
    assert r.code == "invalid_query" and "username" in r.json["error"]["message"]


def test_username_of_64_bytes_is_accepted(alice):
    name = "n" + uuid.uuid4().hex + "x" * 31
    assert len(name) == 64
    r = find(alice, name)
    assert r.status == 404, r  # valid, just nobody's
    u = User(name=name)
    assert find(alice, name).json == {"user_id": u.id, "username": name, "display_name": "",
                                      "deactivated": False}


def test_sql_ish_strings_find_nothing_and_harm_nothing(alice, bob):
    before = psql("SELECT count(*) FROM users")[0][0]
    # valid usernames by the rule, yet SQL-looking: an exact match, nothing more
    for value in ["--", "1.0", "x--", "'", "users"]:
        r = find(alice, value)
        assert r.status in (400, 404), (value, r)
    r = alice.get("/users/" + urllib.parse.quote("u_x' OR 'a'='a", safe=""))
    assert r.status == 404, r
    assert psql("SELECT count(*) FROM users")[0][0] == before
    assert find(alice, bob.name).status == 200


def test_get_by_id(alice, bob):
    r = alice.get(f"/users/{bob.id}")
    assert r.status == 200, r
    assert r.json == {"user_id": bob.id, "username": bob.name, "display_name": "",
                      "deactivated": False}


def test_get_unknown_or_bad_id_is_404(alice):
    for path in ["/users/u_nothing_here", "/users/" + "u" * 129, "/users/a%20b"]:
        r = alice.get(path)
        assert r.status == 404, (path, r)
        assert r.code == "not_found" and r.json["error"]["message"] == "no such user"


def test_other_methods_are_405(alice):
    assert alice.post("/users", {"username": "x"}).code == "method_not_allowed"
    assert alice.post("/users/u_x", {}).code == "method_not_allowed"


@pytest.mark.parametrize("path", ["/users?username=someone", "/users/u_someone"])
def test_token_required(path, bob):
    r = call("GET", path)
    assert r.status == 401 and r.code == "unauthenticated", r
    r = call("GET", path, token="not.a.jwt")
    assert r.status == 401 and r.code.startswith("token_"), r
    r = call("GET", f"/users/{bob.id}", headers={"Authorization": "Basic abc"})
    assert r.status == 401, r


def test_member_names_on_conversations(alice, bob):
    r = alice.post("/conversations", {"title": "names", "members": [bob.id]})
    assert r.status == 201, r
    cid = r.json["id"]
    names = {alice.id: alice.name, bob.id: bob.name}
    assert r.json["member_names"] == names
    assert sorted(r.json["members"]) == sorted(names)
    g = bob.get(f"/conversations/{cid}")
    assert g.status == 200 and g.json["member_names"] == names, g
    listed = [c for c in bob.get("/conversations").json["conversations"] if c["id"] == cid]
    assert listed and listed[0]["member_names"] == names
    carol = User()
    r = alice.post(f"/conversations/{cid}/members", {"members": [carol.id]})
    assert r.status == 200, r
    assert r.json["member_names"] == {**names, carol.id: carol.name}
    listed = [c for c in carol.get("/conversations").json["conversations"] if c["id"] == cid]
    assert listed and listed[0]["member_names"] == {**names, carol.id: carol.name}


# ---- display names and the people picker ----

def patch_me(user, body):
    return call("PATCH", "/users/me", body, token=user.token)


def lookup(user, prefix, **q):
    query = urllib.parse.urlencode({"prefix": prefix, **q})
    return user.get("/users?" + query)


def test_display_name_is_set_shown_and_cleared(alice):
    me = User()
    r = me.get("/users/me")
    assert r.status == 200 and r.json == {"user_id": me.id, "username": me.name,
                                          "display_name": "", "deactivated": False}, r
    r = patch_me(me, {"display_name": "  Ann \t Smith\u3000(she/her) \U0001F332 "})
    assert r.status == 200, r
    assert r.json["display_name"] == "Ann Smith (she/her) \U0001F332"
    assert alice.get(f"/users/{me.id}").json["display_name"] == r.json["display_name"]
    assert find(alice, me.name).json["display_name"] == r.json["display_name"]
    for bad, code in [({"display_name": "Ann\nSmith"}, "invalid_display_name"),
                      ({"display_name": "A\u202eevil"}, "invalid_display_name"),
                      ({"display_name": "a" * 129}, "invalid_display_name"),
                      ({"display_name": 7}, "invalid_request"),
                      ({}, "invalid_request")]:
        r = patch_me(me, bad)
        assert (r.status, r.code) == (400, code), (bad, r)
    assert me.get("/users/me").json["display_name"] == "Ann Smith (she/her) \U0001F332"
    r = patch_me(me, {"display_name": ""})
    assert r.status == 200 and r.json["display_name"] == "", r
    # only one's own: there is no PATCH of another user
    assert call("PATCH", f"/users/{alice.id}", {"display_name": "x"},
                token=me.token).code == "method_not_allowed"
    assert call("PATCH", "/users/me", {"display_name": "x"}).status == 401


def test_prefix_finds_usernames_and_display_names(alice):
    tag = uuid.uuid4().hex[:8]
    ann, andy, anna = User(name=f"pk{tag}_ann"), User(name=f"PK{tag}_Andy"), User(name=f"pk{tag}_ann_a")
    other = User(name=f"zz{tag}_bob")
    assert patch_me(other, {"display_name": f"Pk{tag} Annie"}).status == 200
    # case does not matter; exact username first, then by username
    r = lookup(alice, f"PK{tag}_ANN")
    assert r.status == 200, r
    assert [u["user_id"] for u in r.json["users"]] == [ann.id, anna.id]
    assert r.json["users"][0] == {"user_id": ann.id, "username": ann.name, "display_name": "",
                                  "deactivated": False}
    r = lookup(alice, f"pk{tag}")
    assert sorted(u["user_id"] for u in r.json["users"]) == sorted(
        [ann.id, andy.id, anna.id, other.id])  # the last by its display name
    r = lookup(alice, f"pk{tag} ann")  # a display name's space
    assert [u["user_id"] for u in r.json["users"]] == [other.id]
    # bounded
    assert len(lookup(alice, f"pk{tag}", limit=2).json["users"]) == 2
    for bad in [{"limit": 0}, {"limit": 21}, {"limit": "x"}]:
        r = lookup(alice, f"pk{tag}", **bad)
        assert (r.status, r.code) == (400, "invalid_query"), (bad, r)
    for bad in ["", "x" * 65, "\udcff"]:
        r = alice.get("/users?prefix=" + urllib.parse.quote(bad, safe="", errors="surrogateescape"))
        assert (r.status, r.code) == (400, "invalid_query"), (bad, r)
    # LIKE's wildcards are characters like any other
    for wild in [f"pk{tag}%", "%", f"pk{tag}_%", "\\"]:
        r = lookup(alice, wild)
        assert r.status == 200 and r.json["users"] == [], (wild, r)
    r = lookup(alice, f"pk{tag}_")  # '_' is a username's own character, matched as itself
    assert sorted(u["user_id"] for u in r.json["users"]) == sorted([ann.id, andy.id, anna.id])
    assert call("GET", "/users?prefix=pk").status == 401


def test_lookups_are_rate_limited_per_user_across_replicas():
    """The window lives in Redis: lookups through a replica with a low limit count for the
    user everywhere; another user is not affected."""
    p, base = api_instance("--user-lookups-per-minute=3")
    try:
        u, v = User(), User()

        def at(user, where):
            status, headers, _ = http_get(where + "/users?prefix=a", headers={
                "Authorization": f"Bearer {user.token}"})
            return status, headers
        assert [at(u, base)[0] for _ in range(3)] == [200, 200, 200]
        status, headers = at(u, base)
        assert status == 429
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert at(v, base)[0] == 200
    finally:
        p.stop()
