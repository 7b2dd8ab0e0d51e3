"""Web Push on kchat-api: the VAPID public key served (the stack's own, derived from its PEM
with `cryptography`), a browser's subscription stored, listed, re-sent, moved to another user,
capped and removed, every refusal of what a browser may send, and PATCH
/conversations/{id}/settings muting by a time. The stack runs the API with
--vapid-public-key and --push-allow-http (scripts/env.sh); second instances show it without
them."""
import base64
import json
import os
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kchat_testkit.api import User, api_instance, call, conforms
from kchat_testkit.stack import DAEMONS, ENV, ROOT, psql


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def point(key):
    """The uncompressed point (65 bytes) of an EC key's public half."""
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


def browser_keys():
    """What a browser's PushSubscription.toJSON().keys holds: its P-256 point, an auth secret."""
    return {"p256dh": b64url(point(ec.generate_private_key(ec.SECP256R1()))),
            "auth": b64url(os.urandom(16))}


def endpoint(host="push.example.net"):
    return f"https://{host}/wpush/v2/{uuid.uuid4().hex}"


def subscription(ep=None, keys=None):
    return {"endpoint": ep or endpoint(), "keys": keys or browser_keys()}


def listed(user):
    r = user.get("/push/subscriptions")
    assert r.status == 200, r
    conforms("/push/subscriptions", "GET", r)
    return {s["id"]: s for s in r.json["subscriptions"]}


def row(sub_id):
    return psql(f"SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions "
                f"WHERE id = '{sub_id}'")


# ---- the key ----

def test_the_vapid_public_key_is_the_stacks_own():
    r = call("GET", "/push/vapid-public-key")  # no token needed
    assert r.status == 200, r
    conforms("/push/vapid-public-key", "GET", r)
    key = r.json["public_key"]
    assert len(key) == 87 and "=" not in key, key
    raw = unb64url(key)
    assert len(raw) == 65 and raw[0] == 0x04
    with open(ENV["KCHAT_VAPID_PRIVATE_KEY"], "rb") as f:
        private = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(private.curve, ec.SECP256R1)
    assert raw == point(private)
    # a point of the curve, as a browser's subscribe() checks it
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    # with a token too, and the same each time
    assert User().get("/push/vapid-public-key").json == {"public_key": key}
    # the API was given only the public half
    with open(ENV["KCHAT_VAPID_PUBLIC_KEY"], "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    assert public.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint) == raw
    assert oct(os.stat(ENV["KCHAT_VAPID_PRIVATE_KEY"]).st_mode & 0o777) == "0o600"


def test_without_a_vapid_key_push_is_unavailable():
    ann = User()
    p, base = api_instance("--vapid-public-key=")
    try:
        r = call("GET", "/push/vapid-public-key", base=base)
        assert (r.status, r.code) == (503, "push_unavailable"), r
        conforms("/push/vapid-public-key", "GET", r)
        r = call("POST", "/push/subscriptions", subscription(), token=ann.token, base=base)
        assert (r.status, r.code) == (503, "push_unavailable"), r
        conforms("/push/subscriptions", "POST", r)
        # what the user had can still be listed and removed
        r = call("GET", "/push/subscriptions", token=ann.token, base=base)
        assert (r.status, r.json) == (200, {"subscriptions": []}), r
    finally:
        p.stop()


def test_a_key_that_is_not_p256_stops_start_up():
    env = dict(os.environ, KCHAT_VAPID_PUBLIC_KEY=ENV["KCHAT_JWT_PUBLIC_KEY"])  # an RSA key
    r = subprocess.run([str(DAEMONS["api"]["binary"]), "--listen-port=0",
                        f"--schemas-dir={ROOT / 'schemas'}"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stderr
    errors = [json.loads(line)["msg"] for line in r.stderr.splitlines()
              if line.strip().startswith("{") and json.loads(line)["level"] == "error"]
    assert any("vapid-public-key" in e and "P-256" in e for e in errors), r.stderr


# ---- subscriptions ----

def test_subscribe_list_resubscribe_delete():
    ann = User()
    sub = subscription()
    r = ann.post("/push/subscriptions", sub)
    assert r.status == 201, r
    conforms("/push/subscriptions", "POST", r)
    sid = r.json["id"]
    assert sid.startswith("ps_"), sid
    got = listed(ann)
    assert list(got) == [sid]
    assert got[sid]["endpoint"] == sub["endpoint"]
    created = datetime.strptime(got[sid]["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(created.replace(tzinfo=timezone.utc).timestamp() - time.time()) < 120
    assert row(sid) == [[ann.id, sub["endpoint"], sub["keys"]["p256dh"], sub["keys"]["auth"]]]

    # the same browser again: the same id, 200; new keys replace the old
    r = ann.post("/push/subscriptions", sub)
    assert (r.status, r.json) == (200, {"id": sid}), r
    conforms("/push/subscriptions", "POST", r)
    fresh = browser_keys()
    r = ann.post("/push/subscriptions", {"endpoint": sub["endpoint"], "keys": fresh,
                                         "expirationTime": None})
    assert (r.status, r.json) == (200, {"id": sid}), r
    assert row(sid) == [[ann.id, sub["endpoint"], fresh["p256dh"], fresh["auth"]]]
    assert list(listed(ann)) == [sid]

    # a second browser
    other = subscription()
    r = ann.post("/push/subscriptions", other)
    assert r.status == 201 and r.json["id"] != sid, r
    assert set(listed(ann)) == {sid, r.json["id"]}

    # removed, once
    r = ann.delete(f"/push/subscriptions/{sid}")
    assert r.status == 204 and not r.raw, r
    conforms("/push/subscriptions/{id}", "DELETE", r)
    r = ann.delete(f"/push/subscriptions/{sid}")
    assert (r.status, r.code) == (404, "not_found"), r
    conforms("/push/subscriptions/{id}", "DELETE", r)
    assert sid not in listed(ann) and row(sid) == []
    # subscribing again after a removal is a new subscription
    r = ann.post("/push/subscriptions", sub)
    assert r.status == 201 and r.json["id"] != sid, r

    # the list is one's own only
    assert listed(User()) == {}


def test_an_endpoint_moves_to_the_user_who_subscribes_with_it():
    ann, bob = User(), User()
    sub = subscription()
    r = ann.post("/push/subscriptions", sub)
    assert r.status == 201, r
    first = r.json["id"]
    # bob logs in in the same browser, which subscribes again with its endpoint
    r = bob.post("/push/subscriptions", subscription(sub["endpoint"]))
    assert r.status == 201, r
    moved = r.json["id"]
    assert moved != first
    assert first not in listed(ann)
    assert list(listed(bob)) == [moved]
    assert psql(f"SELECT id, user_id FROM push_subscriptions "
                f"WHERE endpoint = '{sub['endpoint']}'") == [[moved, bob.id]]
    # ann's old id is gone for her; bob's is not hers to remove
    r = ann.delete(f"/push/subscriptions/{first}")
    assert (r.status, r.code) == (404, "not_found"), r
    r = ann.delete(f"/push/subscriptions/{moved}")
    assert (r.status, r.code) == (404, "not_found"), r
    assert list(listed(bob)) == [moved]


def test_another_users_or_an_unknown_subscription_is_not_found():
    ann, bob = User(), User()
    sid = ann.post("/push/subscriptions", subscription()).json["id"]
    for path in (f"/push/subscriptions/{sid}", "/push/subscriptions/ps_nosuchthing",
                 "/push/subscriptions/a%20b", "/push/subscriptions/" + "x" * 200):
        r = bob.delete(path)
        assert (r.status, r.code) == (404, "not_found"), (path, r)
    assert list(listed(ann)) == [sid]
    # without a token
    for r in (call("GET", "/push/subscriptions"),
              call("POST", "/push/subscriptions", subscription()),
              call("DELETE", f"/push/subscriptions/{sid}")):
        assert (r.status, r.code) == (401, "unauthenticated"), r
    conforms("/push/subscriptions", "GET", call("GET", "/push/subscriptions"))
    assert list(listed(ann)) == [sid]


def test_at_most_ten_subscriptions_per_user():
    ann, bob = User(), User()
    subs = [subscription() for _ in range(10)]
    ids = []
    for s in subs:
        r = ann.post("/push/subscriptions", s)
        assert r.status == 201, r
        ids.append(r.json["id"])
    r = ann.post("/push/subscriptions", subscription())
    assert (r.status, r.code) == (409, "too_many_subscriptions"), r
    assert "remove one" in r.json["error"]["message"], r
    conforms("/push/subscriptions", "POST", r)
    # one of the ten again is no new one
    r = ann.post("/push/subscriptions", subs[3])
    assert (r.status, r.json) == (200, {"id": ids[3]}), r
    # bob's browser does not move to ann while she is at the limit
    theirs = subscription()
    bob_id = bob.post("/push/subscriptions", theirs).json["id"]
    r = ann.post("/push/subscriptions", subscription(theirs["endpoint"]))
    assert (r.status, r.code) == (409, "too_many_subscriptions"), r
    assert list(listed(bob)) == [bob_id]
    # one removed, one more fits
    assert ann.delete(f"/push/subscriptions/{ids[0]}").status == 204
    r = ann.post("/push/subscriptions", subscription())
    assert r.status == 201, r
    assert len(listed(ann)) == 10
    assert psql(f"SELECT count(*) FROM push_subscriptions WHERE user_id = '{ann.id}'") == [["10"]]


def test_the_limit_is_an_option():
    ann = User()
    p, base = api_instance("--push-subscriptions-max=2")
    try:
        for _ in range(2):
            r = call("POST", "/push/subscriptions", subscription(), token=ann.token, base=base)
            assert r.status == 201, r
        r = call("POST", "/push/subscriptions", subscription(), token=ann.token, base=base)
        assert (r.status, r.code) == (409, "too_many_subscriptions"), r
        assert "you have 2 push subscriptions" in r.json["error"]["message"], r
    finally:
        p.stop()


# ---- what a browser may send ----

def off_curve():
    raw = bytearray(point(ec.generate_private_key(ec.SECP256R1())))
    raw[-1] ^= 1
    return b64url(bytes(raw))


def std_alphabet_point():
    """A point whose standard base64 has a '+' or a '/' (so it is not base64url too)."""
    while True:
        text = base64.b64encode(point(ec.generate_private_key(ec.SECP256R1()))).decode()
        if "+" in text or "/" in text:
            return text


def refused(user, body, words, base=None):
    r = call("POST", "/push/subscriptions", body, token=user.token, base=base)
    assert (r.status, r.code) == (400, "invalid_request"), (body, r)
    assert words in r.json["error"]["message"], (words, r)
    conforms("/push/subscriptions", "POST", r)


def test_each_refusal_says_what_is_wrong():
    ann = User()
    keys = browser_keys()
    p256 = point(ec.generate_private_key(ec.SECP256R1()))
    cases = [
        # the endpoint
        ({"keys": keys}, "endpoint must be a string"),
        ({"endpoint": 5, "keys": keys}, "endpoint must be a string"),
        (subscription("ftp://push.example.net/x", keys), "https://"),
        (subscription("push.example.net/x", keys), "https://"),
        (subscription("http://push.example.net/x", keys), "loopback"),
        (subscription("http://10.1.2.3/x", keys), "loopback"),
        (subscription("http://127.0.0.1.nip.io/x", keys), "loopback"),
        (subscription("https://user:pw@push.example.net/x", keys), "user info"),
        (subscription("https://push.example.net/a b", keys), "white space"),
        (subscription("https://push.example.net/a\nb", keys), "white space"),
        (subscription("https://push.example.net/\u00e9", keys), "printable ASCII"),
        (subscription("https://push.example.net", keys), "https://host[:port]/path"),
        (subscription("https://push.example.net:0/x", keys), "bad port"),
        (subscription("https://push.example.net/" + "a" * 2024, keys), "longer than 2048"),
        # the keys
        ({"endpoint": endpoint()}, "keys must be an object"),
        ({"endpoint": endpoint(), "keys": "p256dh"}, "keys must be an object"),
        ({"endpoint": endpoint(), "keys": {"auth": keys["auth"]}}, "must be strings"),
        ({"endpoint": endpoint(), "keys": {"p256dh": keys["p256dh"]}}, "must be strings"),
        (subscription(keys={**keys, "p256dh": off_curve()}), "p256dh is not a P-256 public key"),
        (subscription(keys={**keys, "p256dh": b64url(b"\x04" + b"\x00" * 64)}),
         "p256dh is not a P-256 public key"),
        (subscription(keys={**keys, "p256dh": b64url(p256[:64])}), "65-byte"),
        (subscription(keys={**keys, "p256dh": b64url(p256 + b"\x00")}), "65-byte"),
        (subscription(keys={**keys, "p256dh": std_alphabet_point()}), "p256dh is not base64url"),
        (subscription(keys={**keys, "p256dh": "!!!!"}), "p256dh is not base64url"),
        (subscription(keys={**keys, "auth": b64url(os.urandom(15))}), "auth must be 16 bytes"),
        (subscription(keys={**keys, "auth": b64url(os.urandom(17))}), "auth must be 16 bytes"),
        (subscription(keys={**keys, "auth": "?"}), "auth is not base64url"),
    ]
    for body, words in cases:
        refused(ann, body, words)
    assert listed(ann) == {}
    # the exact limit passes; padded base64url passes
    r = ann.post("/push/subscriptions", subscription("https://push.example.net/" + "a" * 2023))
    assert r.status == 201, r
    padded = {"p256dh": keys["p256dh"] + "=", "auth": keys["auth"] + "=="}
    assert ann.post("/push/subscriptions", subscription(keys=padded)).status == 201
    # http on a loopback host: the local stack's stand-in push service (--push-allow-http)
    for ep in ("http://127.0.0.1:9/push/" + uuid.uuid4().hex,
               "http://localhost:9/push/" + uuid.uuid4().hex,
               "http://[::1]:9/push/" + uuid.uuid4().hex):
        r = ann.post("/push/subscriptions", subscription(ep))
        assert r.status == 201, (ep, r)


def test_http_endpoints_need_the_option():
    ann = User()
    p, base = api_instance("--push-allow-http=false")
    try:
        refused(ann, subscription("http://127.0.0.1:9/push/" + uuid.uuid4().hex),
                "https://", base=base)
        r = call("POST", "/push/subscriptions", subscription(), token=ann.token, base=base)
        assert r.status == 201, r
    finally:
        p.stop()


# ---- PATCH /conversations/{id}/settings ----

def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def mute_of(user, convo):
    one = user.get(f"/conversations/{convo}").json
    return one["muted"], one["muted_until"]


def settings(user, convo, body):
    r = user.patch(f"/conversations/{convo}/settings", body)
    conforms("/conversations/{id}/settings", "PATCH", r)
    return r


def test_settings_mute_until_a_time_forever_and_unmute():
    ann, bob, eve = User(), User(), User()
    r = ann.post("/conversations", {"title": "loud", "members": [bob.id]})
    assert r.status == 201, r
    convo = r.json["id"]
    assert mute_of(ann, convo) == (False, None)

    # until a time, in UTC or with an offset: the answer in UTC, to the millisecond
    until = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=250000)
    r = settings(ann, convo, {"muted_until": iso(until)})
    assert (r.status, r.json) == (200, {"muted": True, "muted_until": iso(until)}), r
    assert mute_of(ann, convo) == (True, iso(until))
    assert mute_of(bob, convo) == (False, None)  # bob's is his own
    local = until.astimezone(timezone(timedelta(hours=-5, minutes=-30)))
    r = settings(ann, convo, {"muted_until": local.isoformat(timespec="milliseconds")})
    assert (r.status, r.json) == (200, {"muted": True, "muted_until": iso(until)}), r
    # the answer sent back means the same
    again = settings(ann, convo, r.json)
    assert (again.status, again.json) == (200, r.json), again

    # until unmuted
    r = settings(ann, convo, {"muted": True})
    assert (r.status, r.json) == (200, {"muted": True, "muted_until": None}), r
    assert mute_of(ann, convo) == (True, None)
    r = settings(ann, convo, {"muted": True, "muted_until": None})
    assert (r.status, r.json) == (200, {"muted": True, "muted_until": None}), r

    # unmuted: null, or muted false, twice
    for body in ({"muted_until": None}, {"muted": False}, {"muted": False, "muted_until": None}):
        r = settings(ann, convo, body)
        assert (r.status, r.json) == (200, {"muted": False, "muted_until": None}), (body, r)
        assert mute_of(ann, convo) == (False, None)
    # the mute PUT sets reads back the same way
    assert ann.put(f"/conversations/{convo}/mute", {}).json == {"muted": True, "muted_until": None}
    assert settings(ann, convo, {"muted_until": None}).json["muted"] is False

    # refusals
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    far = datetime.now(timezone.utc) + timedelta(days=366)
    for body in [{}, {"muted_until": "tomorrow"}, {"muted_until": "now"},
                 {"muted_until": "infinity"}, {"muted_until": "2030-01-01"},
                 {"muted_until": "2030-01-01T00:00:00"}, {"muted_until": "2030-02-30T00:00:00Z"},
                 {"muted_until": iso(past)}, {"muted_until": iso(far)}, {"muted_until": 3600},
                 {"muted_until": True}, {"muted": "yes"}, {"muted": 1}, {"muted": None},
                 {"muted": False, "muted_until": iso(until)}]:
        r = settings(ann, convo, body)
        assert (r.status, r.code) == (400, "invalid_request"), (body, r)
    assert mute_of(ann, convo) == (False, None)

    # not a member, or no such conversation: 404, nothing written
    for r in (settings(eve, convo, {"muted": True}),
              settings(eve, convo, {"muted_until": None}),
              settings(ann, "c_nosuchthing", {"muted": True})):
        assert (r.status, r.code) == (404, "not_found"), r
    assert psql(f"SELECT count(*) FROM mutes WHERE user_id = '{eve.id}'") == [["0"]]
