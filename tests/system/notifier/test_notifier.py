"""kchat-notifier against the real stack: messages sent through chat.commands, members from
the read model, presence from the gateways' route registry, subscriptions through the API,
and a local push service and webhook receiver that check what arrives with libraries of
their own (http_ece, cryptography, standardwebhooks: pylib/kchat_testkit/push.py).

The module runs a notifier of its own (short coalescing, fast retries, the receiver's
webhook) in place of the stack's, which it stops first and starts again at the end."""
import asyncio
import signal
import subprocess
import time
import uuid

import pytest

from kchat_testkit.api import User, send_all, wait_last_seq
from kchat_testkit.daemon import start
from kchat_testkit.gateway import connect, route_registered, wait_routes
from kchat_testkit.http import free_port, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.push import PushService, WebhookReceiver
from kchat_testkit.stack import DAEMONS, ROOT, psql

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
COALESCE_MS = 1500


class Notifier:
    """The test's notifier: start, kill -9, start again with the same options."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.d = None
        self.start()

    def start(self):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.d = start(DAEMONS["notifier"]["binary"],
                       [f"--admin-port={self.port}", f"--schemas-dir={ROOT / 'schemas'}",
                        f"--coalesce-ms={COALESCE_MS}", f"--webhook-urls={self.hooks}",
                        f"--webhook-secret={SECRET}", "--retry-min-ms=300",
                        "--retry-max-ms=2000", "--http-timeout-ms=4000",
                        "--origin-concurrency=2", "--session-timeout-ms=6000",
                        "--send-deadline-s=60", "--log-level=debug"],
                       self.base, "the test's notifier healthy")

    def kill(self):
        self.d.stop(signal.SIGKILL)

    def stop(self):
        return self.d.stop()

    def metric(self, name, labels=""):
        return metric(self.base, name, labels)


@pytest.fixture(scope="module")
def env():
    stack = ROOT / "scripts" / "stack.sh"
    subprocess.run([str(stack), "stop", "notifier"], check=True, capture_output=True)
    push, fast, hooks = PushService(), PushService(), WebhookReceiver(SECRET)
    n = Notifier(f"{hooks.origin}/hook")
    try:
        yield push, fast, hooks, n
    finally:
        rc = n.stop()
        push.close()
        fast.close()
        hooks.close()
        subprocess.run([str(stack), "restart", "notifier"], check=True, capture_output=True)
    assert rc == 0, n.d.text()[-3000:]


def subscribe(user, service, name=None):
    """A subscription of user's at service, registered through the API."""
    sub = service.subscription(name or uuid.uuid4().hex[:12])
    r = user.post("/push/subscriptions", sub.body())
    assert r.status == 201, r
    return sub


def group(*users, title="team"):
    owner = users[0]
    r = owner.post("/conversations", {"title": title, "members": [u.id for u in users[1:]]})
    assert r.status == 201, r
    return r.json["id"]


def pushes(service, sub):
    return service.taken("/" + sub.endpoint.split("/", 3)[3])


def hooks_for(hooks, user, convo):
    return [h for h in hooks.taken("/hook")
            if h["data"]["data"]["user_id"] == user.id and h["data"]["data"]["convo_id"] == convo]


def test_an_offline_member_gets_one_coalesced_notification_for_a_burst(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    ann_sub, bob_sub = subscribe(ann, push), subscribe(bob, push)
    send_all(commands, convo, ann, ["one", "two", "three"])
    wait_until(lambda: pushes(push, bob_sub), "bob's push")
    wait_last_seq(ann, convo, 3)
    time.sleep(COALESCE_MS / 1000 * 2)  # a second push would have come by now
    got = pushes(push, bob_sub)
    assert len(got) == 1, got
    p = got[0]["payload"]
    assert (p["type"], p["convo_id"], p["count"], p["first_seq"], p["last_seq"]) == \
        ("message", convo, 3, 1, 3), p
    assert p["title"] == "team" and p["sender"] == ann.name, p
    assert p["body"].startswith(f"3 new messages from {ann.name}"), p
    assert p["body"].endswith("three"), p
    assert p["url"] == f"/c/{convo}/m/1" and p["tag"] == f"convo:{convo}", p
    assert got[0]["urgency"] == "normal"
    assert len(got[0]["topic"]) == 32
    assert pushes(push, ann_sub) == []  # never the sender
    # the webhook: one, signed, for bob only
    wait_until(lambda: hooks_for(hooks, bob, convo), "bob's webhook")
    h = hooks_for(hooks, bob, convo)
    assert len(h) == 1, h
    assert h[0]["data"]["type"] == "message.notification"
    assert h[0]["data"]["data"]["count"] == 3
    assert h[0]["data"]["data"]["senders"] == [ann.name]
    assert h[0]["id"].startswith("msg_")
    assert hooks_for(hooks, ann, convo) == []


def test_a_deactivated_member_gets_nothing(env, commands):
    """Its subscriptions go with the deactivation, and no webhook speaks for it; another
    offline member of the same conversation is told, so the silence is not a late send."""
    push, _, hooks, n = env
    ann, bob, cid = User(), User(), User()
    convo = group(ann, bob, cid)
    bob_sub, cid_sub = subscribe(bob, push), subscribe(cid, push)
    assert bob.post("/users/me/deactivate", {"password": bob.password}).status == 204
    assert psql(f"SELECT count(*) FROM push_subscriptions WHERE user_id = '{bob.id}'") == [["0"]]
    send_all(commands, convo, ann, ["still there?"])
    wait_until(lambda: pushes(push, cid_sub), "cid's push")
    wait_until(lambda: hooks_for(hooks, cid, convo), "cid's webhook")
    time.sleep(COALESCE_MS / 1000 * 2)  # bob's would have come with cid's
    assert pushes(push, bob_sub) == []
    assert hooks_for(hooks, bob, convo) == []


def test_a_connected_member_gets_none_until_they_leave(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    bob_sub = subscribe(bob, push)
    before = n.metric("kchat_notifier_skipped_total", 'reason="connected"')

    async def while_connected():
        ws = await connect(bob.id)
        try:
            await wait_routes([(bob.id, 0)])
            send_all(commands, convo, ann, ["are you there?"])
            wait_last_seq(ann, convo, 1)
            wait_until(lambda: n.metric("kchat_notifier_skipped_total",
                                        'reason="connected"') > before,
                       "the connected member skipped")
            await asyncio.sleep(COALESCE_MS / 1000 * 2)
        finally:
            await ws.close()
    asyncio.run(while_connected())
    assert pushes(push, bob_sub) == []
    assert hooks_for(hooks, bob, convo) == []
    # gone: the route lapses with the close, the next message reaches bob
    wait_until(lambda: not route_registered(bob.id, 0), "bob offline")
    send_all(commands, convo, ann, ["now?"])
    wait_until(lambda: pushes(push, bob_sub), "bob's push once he left")
    p = pushes(push, bob_sub)[0]["payload"]
    assert (p["first_seq"], p["count"]) == (2, 1), p


def test_a_muted_member_hears_only_of_mentions_and_at_once(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    bob_sub = subscribe(bob, push)
    assert bob.put(f"/conversations/{convo}/mute", {}).status == 200
    send_all(commands, convo, ann, ["chatter", "more chatter"])
    wait_last_seq(ann, convo, 2)
    wait_until(lambda: n.metric("kchat_notifier_skipped_total", 'reason="muted"') >= 2,
               "the muted member skipped")
    send_all(commands, convo, ann, [f"@{bob.name} please look"])
    wait_until(lambda: pushes(push, bob_sub), "the mention's push")
    got = pushes(push, bob_sub)
    assert len(got) == 1, got
    p = got[0]["payload"]
    assert p["mention"] is True and p["first_seq"] == 3 and p["count"] == 1, p
    assert p["body"] == f"{ann.name}: @{bob.name} please look", p
    assert got[0]["urgency"] == "high"


def test_a_gone_subscription_is_removed(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    sub = subscribe(bob, push)
    path = "/" + sub.endpoint.split("/", 3)[3]
    push.answer(path, (410, {}, 0))
    before = n.metric("kchat_notifier_failed_total", 'reason="gone"')
    assert len(bob.get("/push/subscriptions").json["subscriptions"]) == 1
    send_all(commands, convo, ann, ["hello?"])
    wait_until(lambda: bob.get("/push/subscriptions").json["subscriptions"] == [],
               "the subscription removed")
    assert n.metric("kchat_notifier_failed_total", 'reason="gone"') == before + 1
    assert [g["status"] for g in push.taken(path, ok=False)] == [410]


def test_429_and_5xx_are_tried_again_with_the_same_names(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    sub = subscribe(bob, push)
    path = "/" + sub.endpoint.split("/", 3)[3]
    push.answer(path, (503, {}, 0), (429, {"Retry-After": "1"}, 0))
    send_all(commands, convo, ann, ["knock knock"])
    wait_until(lambda: push.taken(path), "the push taken at the third try", timeout=60)
    tries = push.taken(path, ok=False)
    assert [t["status"] for t in tries] == [503, 429, 201], tries
    assert len({t["topic"] for t in tries}) == 1
    assert len({(t["payload"]["first_seq"], t["payload"]["count"]) for t in tries}) == 1
    assert n.metric("kchat_notifier_retries_total", 'status="5xx"') >= 1
    assert n.metric("kchat_notifier_retries_total", 'status="429"') >= 1
    for status in ("5xx", "429", "2xx"):
        assert n.metric("kchat_notifier_responses_total", f'kind="push",status="{status}"') >= 1


def test_a_slow_push_service_does_not_hold_the_others(env, commands):
    push, fast, hooks, n = env
    ann, bob, cy = User(), User(), User()
    convo = group(ann, bob, cy)
    slow_subs = [subscribe(bob, push) for _ in range(3)]  # more than --origin-concurrency
    for s in slow_subs:
        push.answer("/" + s.endpoint.split("/", 3)[3], (201, {}, 3))
    cy_sub = subscribe(cy, fast)
    send_all(commands, convo, ann, ["everyone?"])
    wait_until(lambda: pushes(fast, cy_sub), "cy's push at the fast service")
    # when cy's push was taken, none of bob's three slow ones had been answered
    cy_at = pushes(fast, cy_sub)[0]["answered"]
    answered_before = [g for g in push.got if g["answered"] < cy_at and
                       g["path"] in {"/" + s.endpoint.split("/", 3)[3] for s in slow_subs}]
    assert answered_before == [], answered_before
    wait_until(lambda: all(pushes(push, s) for s in slow_subs), "bob's slow pushes", timeout=60)


def test_kill_9_in_a_burst_misses_nothing_and_sends_again_under_the_same_names(env, commands):
    push, _, hooks, n = env
    ann, bob = User(), User()
    convo = group(ann, bob)
    sub = subscribe(bob, push)
    path = "/" + sub.endpoint.split("/", 3)[3]
    hooks.answer("/hook", (200, {}, 0))
    push.answer(path, (201, {}, 3))  # the first push is held while the notifier dies
    send_all(commands, convo, ann, ["a", "b"])
    wait_until(lambda: any(a["path"] == path for a in push.arrived), "the first push in flight")
    n.kill()
    send_all(commands, convo, ann, ["c", "d", "e"])  # while nobody notifies
    wait_last_seq(ann, convo, 5)
    n.start()
    # the push in flight at the kill goes again (once its claim lapses), the same one
    wait_until(lambda: len(push.taken(path)) >= 3, "the pushes after the restart", timeout=90)
    got = push.taken(path)
    first = [g for g in got if g["payload"]["first_seq"] == 1]
    later = [g for g in got if g["payload"]["first_seq"] == 3]
    assert len(first) == 2, got  # the one answered to the dead notifier, and the repeat
    assert first[0]["topic"] == first[1]["topic"]
    assert first[0]["payload"] == first[1]["payload"]
    assert first[0]["payload"]["count"] == 2
    assert len(later) == 1 and later[0]["payload"]["last_seq"] == 5, got
    assert later[0]["payload"]["count"] == 3
    # every message is told of: seqs 1..5 covered, nothing past
    seqs = set()
    for g in got:
        seqs |= set(range(g["payload"]["first_seq"], g["payload"]["last_seq"] + 1))
    assert seqs == {1, 2, 3, 4, 5}
    # the webhooks: each notification's id the same every time it was sent
    wait_until(lambda: len({h["id"] for h in hooks_for(hooks, bob, convo)}) == 2,
               "both webhooks")
    ids = {}
    for h in hooks_for(hooks, bob, convo):
        ids.setdefault(h["data"]["data"]["first_seq"], set()).add(h["id"])
    assert set(ids) == {1, 3} and all(len(v) == 1 for v in ids.values()), ids
