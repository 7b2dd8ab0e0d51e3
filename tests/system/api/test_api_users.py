"""kchat-api's user lookups: GET /users?username= (by the name's key: case and width do not
matter) and GET /users/{id}, both behind an access token; usernames that would look alike;
and the member_names of conversations (Postgres and Redis read paths)."""
import urllib.parse
import uuid

import pytest

from kchat_testkit.api import User, call, unique_name
from kchat_testkit.stack import psql


def find(user, name):
    return user.get("/users?username=" + urllib.parse.quote(name, safe=""))


def test_find_by_username(alice, bob):
    r = find(alice, bob.name)
    assert r.status == 200, r
    assert r.json == {"user_id": bob.id, "username": bob.name}
    assert r.headers.get("Cache-Control") == "no-store"
    assert find(bob, bob.name).json["user_id"] == bob.id  # oneself too


def test_find_non_ascii_username(alice):
    u = User(name="zoë_" + uuid.uuid4().hex[:8])
    r = find(alice, u.name)
    assert r.status == 200, r
    assert r.json == {"user_id": u.id, "username": u.name}


def test_find_ignores_only_case_and_width(alice, bob):
    for same in [bob.name.upper(), bob.name.title()]:
        r = find(alice, same)
        assert r.json == {"user_id": bob.id, "username": bob.name}, (same, r)
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
        assert find(alice, twin).json == {"user_id": first.id, "username": first.name}
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
    assert find(alice, name).json == {"user_id": u.id, "username": name}


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
    assert r.json == {"user_id": bob.id, "username": bob.name}


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
