"""The whole pipeline over secured connections: Kafka by SASL_SSL (PLAIN; see below for
SCRAM), Postgres by TLS with sslmode=verify-full, Redis with an ACL user
and its password. The stack's broker has a SASL_SSL listener and a second Redis that lets in
only that user (scripts/kafka.sh, scripts/redis.sh, certificates and passwords from
scripts/credentials.sh); this module runs a second set of daemons against them, on topics, a
database and consumer groups of its own, so the stack's daemons are untouched. An outside
client (the test) registers, opens a conversation, sends over the WebSocket, and reads
history; wrong credentials leave a daemon running and unhealthy, with the reason in /health.

SCRAM: Debian 12's librdkafka (2.0.2) computes a SCRAM proof that Kafka 4 brokers refuse (the
nonce it sends back is not the server's; fixed in librdkafka 2.6.1), while Kafka 3.x brokers,
which most managed services run, accept it. The stack's broker is Kafka 4, so the daemons log
in by PLAIN here, and docs/operations.md says which to choose.
"""
import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import websockets
from confluent_kafka.admin import AdminClient

from kchat_testkit.api import Resp
from kchat_testkit.daemon import Daemon, start
from kchat_testkit.gateway import recv_until, send
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.metrics import sample, scrape
from kchat_testkit.stack import BUILD, DAEMONS, ENV, ROOT

TLS = Path(ENV["KCHAT_TLS_DIR"])
CA = str(TLS / "ca.pem")
KAFKA_PASSWORD = (TLS / "kafka-password").read_text().strip()
REDIS_PASSWORD = (TLS / "redis-password").read_text().strip()
SASL = f"127.0.0.1:{ENV['KCHAT_KAFKA_SASL_PORT']}"
PREFIX = f"sec{uuid.uuid4().hex[:6]}."
DB = PREFIX.rstrip(".")
TOPICS = {k: PREFIX + v for k, v in {
    "commands": "chat.commands", "events": "chat.events", "deliveries": "chat.deliveries",
    "dlq": "chat.commands.dlq", "state": "chat.processor.state"}.items()}


def secured_env(**over):
    """The environment of a daemon on the secured connections; every connection variable of
    the stack's own (inherited from scripts/env.sh) is replaced."""
    env = dict(os.environ)
    env.update({
        "KCHAT_KAFKA_BROKERS": SASL,
        "KCHAT_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KCHAT_KAFKA_SASL_MECHANISM": "PLAIN",
        "KCHAT_KAFKA_SASL_USERNAME": "kchat",
        "KCHAT_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
        "KCHAT_KAFKA_SSL_CA_LOCATION": CA,
        # localhost, not the address: verify-full checks the name against the certificate.
        "KCHAT_PG_DSN": f"host=localhost port={ENV['KCHAT_PG_PORT']} dbname={DB} user=kchat "
                        f"sslmode=verify-full sslrootcert={CA}",
        "KCHAT_REDIS_HOST": "127.0.0.1",
        "KCHAT_REDIS_PORT": ENV["KCHAT_REDIS_AUTH_PORT"],
        "KCHAT_REDIS_USERNAME": "kchat",
        "KCHAT_REDIS_PASSWORD": REDIS_PASSWORD,
        "KCHAT_COMMANDS_TOPIC": TOPICS["commands"],
        "KCHAT_EVENTS_TOPIC": TOPICS["events"],
        "KCHAT_DELIVERIES_TOPIC": TOPICS["deliveries"],
    })
    env.update(over)
    return env


def kchatctl(*args, env):
    return subprocess.run([str(BUILD / "ctl" / "kchatctl"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def psql_admin(sql):
    subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                    ENV["KCHAT_PG_PORT"], "-U", "postgres", "-d", "postgres", "-c", sql],
                   check=True, capture_output=True, text=True)


def health(base):
    status, _, body = http_get(base + "/health", timeout=5)
    return status, json.loads(body or b"{}")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secured")
    spec = json.loads((ROOT / "kafka" / "topics.json").read_text())
    for t in spec["topics"]:
        t["name"] = PREFIX + t["name"]
    topics_file = tmp / "topics.json"
    topics_file.write_text(json.dumps(spec))
    psql_admin(f'CREATE DATABASE "{DB}" OWNER kchat')
    daemons = []
    try:
        r = kchatctl("topics", f"--topics-file={topics_file}", env=secured_env())
        assert r.returncode == 0, r.stderr
        r = kchatctl("migrate", f"--migrations-dir={ROOT / 'db' / 'migrations'}",
                     env=secured_env())
        assert r.returncode == 0, r.stderr
        ports = SimpleNamespace(**{k: free_port() for k in
                                   ["processor", "projector", "gateway", "ws", "api"]})
        env = secured_env()
        schemas = f"--schemas-dir={ROOT / 'schemas'}"
        runs = [
            ("processor", [schemas, f"--admin-port={ports.processor}", f"--instance-id={DB}",
                           f"--group-id={PREFIX}processor", f"--state-topic={TOPICS['state']}",
                           f"--dlq-topic={TOPICS['dlq']}"], ports.processor),
            ("projector", [schemas, f"--admin-port={ports.projector}",
                           f"--group-id={PREFIX}projector"], ports.projector),
            ("gateway", [schemas, f"--admin-port={ports.gateway}", f"--listen-port={ports.ws}",
                         "--slot=0"], ports.gateway),
            ("api", [schemas, f"--listen-port={ports.api}", f"--instance-id={DB}"], ports.api),
        ]
        for name, args, port in runs:
            daemons.append(start(DAEMONS[name]["binary"], args, f"http://127.0.0.1:{port}",
                                 f"the secured {name} healthy", env=env, timeout=90))
        yield SimpleNamespace(ports=ports, env=env, daemons=daemons)
    finally:
        for d in reversed(daemons):
            d.stop()
        psql_admin(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        admin = AdminClient({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"]})
        for f in admin.delete_topics(list(TOPICS.values()), operation_timeout=30).values():
            try:
                f.result()
            except Exception:  # noqa: BLE001 - a topic the fixture never made
                pass


def call(port, method, path, body=None, token=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    return Resp(*http_get(f"http://127.0.0.1:{port}{path}", timeout=30, method=method,
                          data=data, headers=h))


def user(port, name):
    r = call(port, "POST", "/auth/register", {"username": name, "password": "correct horse 1"})
    assert r.status == 201, r
    uid = r.json["user_id"]
    r = call(port, "POST", "/auth/login", {"username": name, "password": "correct horse 1"})
    assert r.status == 200, r
    return SimpleNamespace(id=uid, token=r.json["access_token"])


def auth_redis():
    return redis.Redis(host="127.0.0.1", port=int(ENV["KCHAT_REDIS_AUTH_PORT"]),
                       username="kchat", password=REDIS_PASSWORD, decode_responses=True)


def test_the_pipeline_runs_over_sasl_ssl_tls_postgres_and_redis_auth(secured):
    p = secured.ports
    ann, ben = user(p.api, f"ann_{DB}"), user(p.api, f"ben_{DB}")
    r = call(p.api, "POST", "/conversations", {"title": "secured", "members": [ben.id]},
             token=ann.token)
    assert r.status == 201, r
    convo = r.json["id"]
    rc = auth_redis()

    async def body():
        url = f"ws://127.0.0.1:{p.ws}/ws"
        wa = await websockets.connect(url, additional_headers={
            "Authorization": "Bearer " + ann.token})
        wb = await websockets.connect(url, additional_headers={
            "Authorization": "Bearer " + ben.token})
        # The processor routes live deliveries by the presence registry, kept in the
        # password Redis: wait until both sockets are in it.
        for _ in range(400):
            if all(rc.hexists(f"kchat:route:{u.id}", "0") for u in (ann, ben)):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the secured gateway registered no routes")
        await send(wa, type="message.send", convo_id=convo, client_msg_id="s-1",
                   content="over TLS")
        ack, _ = await recv_until(wa, lambda f: f.get("type") == "ack")
        assert ack["status"] == "ok" and ack["seq_no"] == 1, ack
        mc, _ = await recv_until(wb, lambda f: f.get("type") == "message.create")
        assert mc["content"] == "over TLS" and mc["seq_no"] == 1, mc
        await wa.close()
        await wb.close()
    asyncio.run(body())

    def history():
        r = call(p.api, "GET", f"/conversations/{convo}/messages", token=ben.token)
        return r.status == 200 and [m["content"] for m in r.json["messages"]] == ["over TLS"]
    wait_until(history, "the message in the history of the secured read model", timeout=30)

    # Every Postgres session of the daemons' database is encrypted.
    out = subprocess.run(["psql", "-X", "-qAt", "-h", "127.0.0.1", "-p", ENV["KCHAT_PG_PORT"],
                          "-U", "postgres", "-d", "postgres", "-c",
                          "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a "
                          f"JOIN pg_stat_ssl s USING (pid) WHERE a.datname = '{DB}'"],
                         check=True, capture_output=True, text=True).stdout.split("|")
    tls, total = int(out[0]), int(out[1])
    assert total > 0 and tls == total, out
    # Redis: the default user is off, so whatever the daemons wrote there they wrote as the
    # ACL user: the routes above, and the projector's read model of the conversation.
    assert any(rc.scan_iter(match=f"kchat:rm:*{convo}*", count=1000)), "no read model in Redis"


def test_a_wrong_redis_password_leaves_the_daemon_running_unhealthy_with_the_reason(secured):
    p = free_port()
    env = dict(secured.env, KCHAT_REDIS_PASSWORD="not-the-password")
    d = Daemon(DAEMONS["gateway"]["binary"],
               [f"--schemas-dir={ROOT / 'schemas'}", f"--admin-port={p}",
                f"--listen-port={free_port()}", "--slot=1"], env=env)
    try:
        base = f"http://127.0.0.1:{p}"

        def refused():
            try:
                status, h = health(base)
            except OSError:
                return None
            text = json.dumps(h)
            return status == 503 and "AUTH refused" in text and "WRONGPASS" in text
        wait_until(refused, "/health naming Redis' refusal", timeout=30)
        assert d.poll() is None
        assert http_get(base + "/live")[0] == 200  # not ready, but alive: no restart
        # /metrics says the same: not ready, for its Redis checks
        text = scrape(base)
        assert sample(text, "kchat_ready", default=None) == 0
        assert sample(text, 'kchat_health_check_up{check="redis"}', default=None) == 0
        assert "not-the-password" not in d.text() and REDIS_PASSWORD not in d.text()
    finally:
        assert d.stop() == 0


def test_a_wrong_kafka_password_stops_the_start_with_the_brokers_refusal(secured):
    env = dict(secured.env, KCHAT_KAFKA_SASL_PASSWORD="not-the-password")
    r = subprocess.run([str(DAEMONS["projector"]["binary"]), f"--schemas-dir={ROOT / 'schemas'}",
                        "--admin-port=0", f"--group-id={PREFIX}wrong"],
                       capture_output=True, text=True, env=env, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-2000:]
    assert "start-up failed" in out and "Authentication failed" in out, out[-2000:]
    assert "not-the-password" not in out and KAFKA_PASSWORD not in out


def test_contradicting_security_options_are_refused_at_start():
    env = dict(os.environ, KCHAT_KAFKA_SASL_USERNAME="kchat")
    r = subprocess.run([str(DAEMONS["processor"]["binary"]), "--admin-port=0"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0
    assert "need kafka-security-protocol sasl_ssl or sasl_plaintext" in r.stdout + r.stderr
    env = dict(os.environ, KCHAT_KAFKA_SECURITY_PROTOCOL="sasl_ssl")
    r = kchatctl("topics", env=env)
    assert r.returncode != 0 and "needs kafka-sasl-username" in r.stderr, r.stderr
    env = dict(os.environ, KCHAT_KAFKA_SECURITY_PROTOCOL="sasl_ssl",
               KCHAT_KAFKA_SASL_USERNAME="kchat", KCHAT_KAFKA_SASL_MECHANISM="GSSAPI")
    r = kchatctl("topics", env=env)
    assert r.returncode != 0 and "expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" in r.stderr
