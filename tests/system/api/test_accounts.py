"""Account events on chat.accounts, as analytics reads them: a registration, display name
changes (the same name again makes none) and a change made in SQL by an operator for a user
each come out once, keyed by user_id on the partition Kafka's default partitioner gives it,
in event_no order, decoded by fastavro and by confluent-kafka's AvroDeserializer through the
schema registry; the relay leaves account_outbox empty behind it, and with two API
instances one relays and the other takes over when the first's session ends."""
import json
import os
import re
import subprocess
import sys
import time

from confluent_kafka import DeserializingConsumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer

from kchat_testkit.api import BASE, User
from kchat_testkit.daemon import start
from kchat_testkit.http import free_port, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import BUILD, ENV, ROOT, psql
from kchat_testkit.wire import body, java_partition, read_to_end, read_topic

TOPIC = "chat.accounts"
PARTITIONS = next(t["partitions"] for t in
                  json.loads((ROOT / "kafka" / "topics.json").read_text())["topics"]
                  if t["name"] == TOPIC)


def account_events(user_id, n):
    """The first n records of chat.accounts keyed by user_id: (msg, value)."""
    key = user_id.encode()
    got = read_topic(ENV["KCHAT_KAFKA_BROKERS"], TOPIC, lambda k, v, m: k == key,
                     lambda g: len(g) >= n)
    assert len(got) >= n, got
    return got


def one(sql):
    """The single value a statement answers."""
    (value,), = psql(sql)
    return value


def test_registration_and_display_names_come_out_in_order():
    u = User()
    assert u.patch("/users/me", {"display_name": "Ada L."}).status == 200
    assert u.patch("/users/me", {"display_name": "Ada L."}).status == 200  # no change
    assert u.patch("/users/me", {"display_name": "Ada Lovelace"}).status == 200
    # an operator's change, outside the API, names its actor
    psql(f"BEGIN; SELECT set_config('kchat.actor', 'u_operator', true); "
         f"UPDATE users SET display_name = '' WHERE user_id = '{u.id}'; COMMIT;")
    got = account_events(u.id, 4)
    values = [v for _, v in got]
    assert [v["type"] for v in values] == ["UserRegistered", "DisplayNameChanged",
                                           "DisplayNameChanged", "DisplayNameChanged"]
    bodies = [body(v) for v in values]
    assert bodies[0] == ("UserRegistered", {"username": u.name})
    assert bodies[1] == ("DisplayNameChanged", {"display_name": "Ada L.", "previous": ""})
    assert bodies[2] == ("DisplayNameChanged",
                         {"display_name": "Ada Lovelace", "previous": "Ada L."})
    assert bodies[3] == ("DisplayNameChanged", {"display_name": "", "previous": "Ada Lovelace"})
    assert [v["actor_id"] for v in values] == [u.id, u.id, u.id, "u_operator"]
    nos = [v["event_no"] for v in values]
    assert nos == sorted(nos) and len(set(nos)) == 4
    assert len({v["event_id"] for v in values}) == 4
    assert all(v["user_id"] == u.id for v in values)
    assert {m.partition() for m, _ in got} == {java_partition(u.id.encode(), PARTITIONS)}
    # the relay has sent everything of the user's, and the repeated name made no event
    wait_until(lambda: one(f"SELECT count(*) FROM account_outbox WHERE user_id = '{u.id}'")
               == "0", "the user's rows leaving account_outbox")
    key = u.id.encode()
    assert len(read_to_end(ENV["KCHAT_KAFKA_BROKERS"], TOPIC, lambda k, v, m: k == key)) == 4


def test_the_registry_decodes_them_with_the_standard_deserializer():
    u = User()
    account_events(u.id, 1)
    registry = SchemaRegistryClient({"url": f"http://127.0.0.1:{ENV['KCHAT_REGISTRY_PORT']}"})
    consumer = DeserializingConsumer({
        "bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"],
        "group.id": f"accounts-{u.id}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "value.deserializer": AvroDeserializer(registry, return_record_name=True),
    })
    consumer.subscribe([TOPIC])
    try:
        found, deadline = None, time.monotonic() + 90
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.key() == u.id.encode():
                found = msg.value()
                break
        assert found is not None
        assert found["type"] == "UserRegistered"
        # the union member keeps its full name with return_record_name
        assert found["body"] == ("io.kchat.UserRegistered", {"username": u.name})
    finally:
        consumer.close()


def leader(base):
    return metric(base, "kchat_api_account_relay_leader")


def test_one_instance_relays_and_another_takes_over_when_its_session_ends(tmp_path):
    """A second API instance waits while the first holds the relay's lock; when Postgres ends
    the session that holds it, one of them takes it and nothing is lost or relayed twice."""
    port = free_port()
    base2 = f"http://127.0.0.1:{port}"
    second = start(BUILD / "api" / "kchat-api",
                   [f"--listen-port={port}", f"--schemas-dir={ROOT / 'schemas'}",
                    "--instance-id=accounts-second"],
                   base2, "a second API instance", log_path=tmp_path / "api2.log")
    try:
        wait_until(lambda: leader(BASE) + leader(base2) == 1, "one relay")
        before = User()
        account_events(before.id, 1)
        wait_until(lambda: one(f"SELECT count(*) FROM account_outbox WHERE user_id = "
                                f"'{before.id}'") == "0", "the first relay done")
        ended = one("SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                     "WHERE locktype = 'advisory' AND classid = 0 AND objid = 1801675107")
        assert ended == "1"
        after = User()
        assert after.patch("/users/me", {"display_name": "after the takeover"}).status == 200
        got = account_events(after.id, 2)
        assert [v["type"] for _, v in got] == ["UserRegistered", "DisplayNameChanged"]
        wait_until(lambda: leader(BASE) + leader(base2) == 1, "one relay again")
        wait_until(lambda: one("SELECT count(*) FROM account_outbox WHERE user_id IN "
                                f"('{before.id}', '{after.id}')") == "0",
                   "the outbox emptied")
        for u, n in ((before, 1), (after, 2)):
            key = u.id.encode()
            assert len(read_to_end(ENV["KCHAT_KAFKA_BROKERS"], TOPIC,
                                   lambda k, v, m: k == key)) == n
    finally:
        second.stop()


def test_the_analytics_example_knows_people_by_their_names_now(tmp_path):
    """docs/analytics.md's reader of chat.accounts, run as written: the newest names, and a
    record sent twice (as a relay that stopped before deleting would) applied once."""
    u = User()
    assert u.patch("/users/me", {"display_name": "Grace"}).status == 200
    account_events(u.id, 2)
    # the registration again, as a relay would send it a second time
    (first, _), = account_events(u.id, 1)[:1]
    p = Producer({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"],
                  "partitioner": "murmur2_random"})
    p.produce(TOPIC, key=first.key(), value=first.value())
    assert p.flush(30) == 0
    doc = (ROOT / "docs" / "analytics.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc.split("## People: chat.accounts\n", 1)[1],
                     re.S).group(1)
    script = tmp_path / "people.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script), u.id], cwd=ROOT,
                       env={**os.environ, "KAFKA": ENV["KCHAT_KAFKA_BROKERS"]},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["asked"][u.id] == {"username": u.name, "display_name": "Grace"}
    assert out["skipped"] >= 1


def test_a_row_that_cannot_be_converted_stays_and_holds_no_other():
    """A row the trigger did not write (an operator's mistake) is left in account_outbox,
    logged and counted once; the rows after it are relayed."""
    errors = metric(BASE, "kchat_api_account_relay_errors_total")
    bad = one("INSERT INTO account_outbox (user_id, event) VALUES "
              "('u_nobody', '{\"not\": \"an account event\"}') RETURNING event_no")
    try:
        u = User()
        account_events(u.id, 1)
        wait_until(lambda: metric(BASE, "kchat_api_account_relay_errors_total") == errors + 1,
                   "the bad row counted")
        assert one(f"SELECT count(*) FROM account_outbox WHERE event_no = {bad}") == "1"
        wait_until(lambda: one(f"SELECT count(*) FROM account_outbox WHERE user_id = "
                                f"'{u.id}'") == "0", "the good row relayed")
        time.sleep(2.5)  # two more relay cycles pass over it: still counted once
        assert metric(BASE, "kchat_api_account_relay_errors_total") == errors + 1
    finally:
        psql(f"DELETE FROM account_outbox WHERE event_no = {bad}")
