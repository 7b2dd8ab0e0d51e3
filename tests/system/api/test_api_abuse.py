"""kchat-api under a hostile world: password guessing is throttled per (account, address) and
per address with growing delays (429 with Retry-After, no hashing spent) without locking the
owner out, an account guessed at from many addresses is paced, a flood of logins does not
starve another address's login, and registrations are limited per address.

The tests call the API from loopback, a trusted proxy by default, so an X-Forwarded-For
header names the client address each request stands for."""
import json
import random
import threading
import time

from kchat_testkit.api import (BASE, Resp, User, api_instance, serving_without_redis,
                               unique_name)
from kchat_testkit.daemon import Daemon
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.metrics import samples, scrape
from kchat_testkit.stack import BUILD, ROOT


def addr():
    """An address of its own for each use (198.18.0.0/15, RFC 2544's benchmarking range): the
    counts live in the shared Redis, so no two tests (or runs on one stack) share a client."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def post(path, body, client, base=BASE):
    return Resp(*http_get(base + path, method="POST", timeout=60, data=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json",
                                   "X-Forwarded-For": client}))


def metric(name, base=BASE):
    """The sum of a metric's series (0 when absent)."""
    return sum(v for k, v in samples(scrape(base), name).items()
               if k == name or k.startswith(name + "{"))


def retry_after(r):
    v = {k.lower(): v for k, v in r.headers.items()}.get("retry-after")
    assert v is not None and v.isdigit() and int(v) >= 1, r.headers
    return int(v)


def test_guessing_one_account_is_throttled_but_the_owner_gets_in():
    u = User()
    attacker, owner = addr(), addr()
    wrong = {"username": u.name, "password": "not the password"}
    # wrong passwords until a delay of a few seconds is in force (each failure past the
    # threshold doubles it; a refusal costs no failure, so wait each one out)
    for _ in range(20):
        r = post("/auth/login", wrong, attacker)
        if r.status == 429 and retry_after(r) >= 4:
            break
        if r.status == 429:
            time.sleep(retry_after(r))
        else:
            assert (r.status, r.code) == (401, "invalid_credentials"), r
    else:
        raise AssertionError("never throttled")
    assert r.code == "throttled", r
    # while throttled, even the right password is refused, and no hash is spent on it
    jobs = metric("kchat_api_pwhash_jobs_total")
    refused = metric("kchat_api_auth_refusals_total")
    r = post("/auth/login", {"username": u.name, "password": u.password}, attacker)
    assert (r.status, r.code) == (429, "throttled"), r
    retry_after(r)
    r = post("/auth/login", wrong, attacker)
    assert r.status == 429, r
    assert metric("kchat_api_pwhash_jobs_total") == jobs
    assert metric("kchat_api_auth_refusals_total") >= refused + 2
    text = http_get(BASE + "/metrics")[2].decode()
    assert 'kchat_api_auth_refusals_total{reason="account_address_failures"}' in text
    # the owner, from another address, logs in at once
    r = post("/auth/login", {"username": u.name, "password": u.password}, owner)
    assert r.status == 200, r
    assert r.json["user_id"] == u.id


def test_an_account_guessed_from_many_addresses_is_paced_not_locked():
    p, base = api_instance("--login-fails-per-account=3", "--login-account-pace-ms=60000")
    try:
        u = User()
        for _ in range(3):  # one failure each from three addresses: none is delayed itself
            r = post("/auth/login", {"username": u.name, "password": "wrong guess"}, addr(), base)
            assert r.status == 401, r
        # the account is now paced: one attempt per pace, from wherever it comes
        first = post("/auth/login", {"username": u.name, "password": "wrong guess"}, addr(), base)
        assert first.status == 401, first
        r = post("/auth/login", {"username": u.name, "password": u.password}, addr(), base)
        assert (r.status, r.code) == (429, "throttled"), r
        assert retry_after(r) <= 60
        assert 'reason="account_paced"' in http_get(base + "/metrics")[2].decode()
        # another account is not paced
        v = User()
        r = post("/auth/login", {"username": v.name, "password": v.password}, addr(), base)
        assert r.status == 200, r
    finally:
        p.stop()


def test_a_flood_of_logins_does_not_starve_another_address():
    """One hash at a time: four addresses flood logins for unknown users from several threads
    each, and a real user's login from a fifth address still succeeds (it waits its turn in
    the fair queue); the flooders are refused once they have too much in flight or too many
    failures."""
    p, base = api_instance("--pwhash-max-inflight=1", "--pwhash-opslimit=3")
    try:
        owner = addr()
        name, pw = unique_name("real"), "a real password"
        assert post("/auth/register", {"username": name, "password": pw}, owner, base).status == 201
        flooders = [addr() for _ in range(4)]
        stop = threading.Event()
        statuses = []

        def flood(client):
            while not stop.is_set():
                r = post("/auth/login", {"username": unique_name("nobody"), "password": "guess"},
                         client, base)
                statuses.append(r.status)

        threads = [threading.Thread(target=flood, args=(c,)) for c in flooders for _ in range(4)]
        for t in threads:
            t.start()
        try:
            # let the flood fill the queue before the real user asks
            deadline = time.monotonic() + 30
            while len(statuses) < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            results = [post("/auth/login", {"username": name, "password": pw}, owner, base)
                       for _ in range(3)]
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        for r in results:
            assert r.status == 200, r
        assert 429 in statuses, sorted(set(statuses))
        assert set(statuses) <= {401, 429}, sorted(set(statuses))
    finally:
        p.stop()


def test_registrations_are_limited_per_address():
    p, base = api_instance("--register-per-address-hour=3")
    try:
        client = addr()
        for _ in range(3):
            r = post("/auth/register", {"username": unique_name(), "password": "long enough"},
                     client, base)
            assert r.status == 201, r
        r = post("/auth/register", {"username": unique_name(), "password": "long enough"},
                 client, base)
        assert (r.status, r.code) == (429, "throttled"), r
        assert 1 <= retry_after(r) <= 3600
        # another address is not concerned
        r = post("/auth/register", {"username": unique_name(), "password": "long enough"},
                 addr(), base)
        assert r.status == 201, r
        assert 'kchat_api_auth_refusals_total{reason="registrations"}' in \
            http_get(base + "/metrics")[2].decode()
    finally:
        p.stop()


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy():
    """With no trusted proxy, the header is ignored: the limit falls on the peer itself (which
    is then not exempt from the per-address limits as a trusted proxy is)."""
    p, base = api_instance("--trusted-proxies=", "--register-per-address-hour=1")
    try:
        # loopback's count is on the shared Redis: only the second attempt is sure to be over
        post("/auth/register", {"username": unique_name(), "password": "long enough"}, addr(),
             base)
        r = post("/auth/register", {"username": unique_name(), "password": "long enough"},
                 addr(), base)
        assert (r.status, r.code) == (429, "throttled"), r
    finally:
        p.stop()


def test_without_redis_the_throttle_fails_open(tmp_path):
    """Redis unreachable: logins and registrations go on unthrottled, which is counted and
    logged (at a bounded rate), rather than refused."""
    port = free_port()
    p = Daemon(BUILD / "api" / "kchat-api", [f"--listen-port={port}",
                                              f"--schemas-dir={ROOT / 'schemas'}",
                                              f"--redis-port={free_port()}"],
               log_path=tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        # /health says 503 (its redis check fails) but the API serves
        wait_until(lambda: serving_without_redis(base), "the API without Redis up")
        client, name = addr(), unique_name("noredis")
        r = post("/auth/register", {"username": name, "password": "long enough"}, client, base)
        assert r.status == 201, r
        for _ in range(8):  # past every failure threshold: no delay without Redis
            r = post("/auth/login", {"username": name, "password": "wrong guess"}, client, base)
            assert r.status == 401, r
        r = post("/auth/login", {"username": name, "password": "long enough"}, client, base)
        assert r.status == 200, r
        assert metric("kchat_api_auth_throttle_skipped_total", base) >= 10
        skipped = [x for x in p.entries() if x["msg"].startswith("the login throttle cannot reach")]
        assert 1 <= len(skipped) < 10, skipped  # not a line per request
    finally:
        p.stop()
