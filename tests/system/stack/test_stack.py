"""The stack comes up from nothing: every daemon is healthy, topics and migrations are applied."""
import json
import os
import subprocess
import uuid

import pytest
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                  ConfigResource)

from kchat_testkit.http import http_get
from kchat_testkit.stack import BUILD, DAEMONS, ROOT, psql

EXPECTED_CHECKS = {
    # the stack's processor runs the default two transactional producers
    "processor": {"kafka_consumer", "kafka_producer", "kafka_producer_1"},
    "projector": {"kafka_consumer", "postgres", "redis", "events"},
    "notifier": {"kafka_consumer", "postgres", "redis"},
    "archiver": {"kafka_consumer", "object_store"},
    "gateway": {"kafka_consumer", "kafka_producer", "redis", "redis_pubsub"},
    "api": {"kafka_producer", "postgres", "postgres_listen", "redis", "revocations"},
    "registry": set(),  # it needs nothing but its files
}


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_health_is_green(name):
    status, headers, body = http_get(DAEMONS[name]["health"] + "/health")
    doc = json.loads(body)
    assert status == 200, doc
    assert headers["Content-Type"].startswith("application/json")
    assert doc["status"] == "ok"
    assert set(doc["checks"]) == EXPECTED_CHECKS[name]
    assert all(c["ok"] for c in doc["checks"].values())


def spec_topics():
    with open(ROOT / "kafka" / "topics.json") as f:
        return json.load(f)["topics"]


def test_topics_match_the_spec(brokers):
    admin = AdminClient({"bootstrap.servers": brokers})
    md = admin.list_topics(timeout=10)
    for t in spec_topics():
        assert t["name"] in md.topics, t["name"]
        assert len(md.topics[t["name"]].partitions) == t["partitions"]
    resources = [ConfigResource("topic", t["name"]) for t in spec_topics()]
    for res, fut in admin.describe_configs(resources).items():
        got = fut.result()
        want = dict(next(t for t in spec_topics() if t["name"] == res.name)["config"])
        # kchatctl's --min-insync-replicas, set by scripts/env.sh for three Kafka nodes
        if os.environ.get("KCHAT_MIN_INSYNC_REPLICAS"):
            want["min.insync.replicas"] = os.environ["KCHAT_MIN_INSYNC_REPLICAS"]
        for key, value in want.items():
            assert got[key].value == value, (res.name, key)
    events = admin.describe_configs([ConfigResource("topic", "chat.events")])
    cfg = list(events.values())[0].result()
    assert cfg["retention.ms"].value == "-1"
    assert cfg["cleanup.policy"].value == "delete"


def kchatctl(*args):
    return subprocess.run([str(BUILD / "ctl" / "kchatctl"), *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_topics_apply_is_idempotent_and_repairs_drift(brokers):
    first = kchatctl("topics", f"--kafka-brokers={brokers}")
    assert first.returncode == 0, first.stderr
    assert all(line.split()[-1] == "unchanged" for line in first.stdout.splitlines()), first.stdout

    admin = AdminClient({"bootstrap.servers": brokers})
    drift = ConfigResource("topic", "chat.commands", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([drift]).values():
        fut.result()
    repaired = kchatctl("topics", f"--kafka-brokers={brokers}")
    assert repaired.returncode == 0, repaired.stderr
    assert "chat.commands            configuration updated" in repaired.stdout
    cfg = list(admin.describe_configs([ConfigResource("topic", "chat.commands")]).values())[0]
    assert cfg.result()["retention.ms"].value == "604800000"


def test_topics_rejects_a_bad_spec(tmp_path, brokers):
    bad = tmp_path / "topics.json"
    bad.write_text('{"topics": [{"name": "x", "partitions": 0, "replication_factor": 1}]}')
    r = kchatctl("topics", f"--kafka-brokers={brokers}", f"--topics-file={bad}")
    assert r.returncode != 0
    assert "partitions" in r.stderr
    bad.write_text("not json")
    r = kchatctl("topics", f"--kafka-brokers={brokers}", f"--topics-file={bad}")
    assert r.returncode != 0
    assert "topics" in r.stderr


def test_migrations_are_recorded_once(pg_dsn):
    rows = psql("SELECT version, name FROM kchat_schema_migrations ORDER BY version")
    files = sorted(p.name for p in (ROOT / "db" / "migrations").glob("*.sql"))
    assert [r[1] for r in rows] == files
    again = kchatctl("migrate", f"--pg-dsn={pg_dsn}")
    assert again.returncode == 0, again.stderr
    assert f"migrations: 0 applied, {len(files)} in total" in again.stdout


def test_an_edited_migration_is_refused(tmp_path, pg_dsn):
    for p in (ROOT / "db" / "migrations").glob("*.sql"):
        (tmp_path / p.name).write_text(p.read_text() + "\n-- edited\n")
    r = kchatctl("migrate", f"--pg-dsn={pg_dsn}", f"--migrations-dir={tmp_path}")
    assert r.returncode != 0
    assert "changed after it was applied" in r.stderr


def test_the_username_migration_keeps_the_oldest_of_names_that_collide(tmp_path, pg_dsn):
    """0003 gives every user the key of their name; of names that now collide, the oldest
    keeps it and each other gets the start of its user id appended."""
    schema = "mig_" + uuid.uuid4().hex[:8]
    dsn = f"{pg_dsn} options=-csearch_path={schema}"
    psql(f"CREATE SCHEMA {schema}")
    try:
        early = tmp_path / "early"
        early.mkdir()
        for p in sorted((ROOT / "db" / "migrations").glob("*.sql")):
            if p.name < "0003":
                (early / p.name).write_text(p.read_text())
        r = kchatctl("migrate", f"--pg-dsn={dsn}", f"--migrations-dir={early}")
        assert r.returncode == 0, r.stderr
        psql(f"INSERT INTO {schema}.users (user_id, username, created_at) VALUES "
             "('u_aaaa1111', 'CaseX', now() - interval '3 days'), "
             "('u_bbbb2222', 'casex', now() - interval '2 days'), "
             "('u_cccc3333', 'CASEX', now() - interval '1 day'), "
             "('u_dddd4444', 'other', now())")
        r = kchatctl("migrate", f"--pg-dsn={dsn}")
        assert r.returncode == 0, r.stderr
        rows = psql(f"SELECT user_id, username, username_key FROM {schema}.users ORDER BY 1")
        assert rows == [["u_aaaa1111", "CaseX", "casex"],
                        ["u_bbbb2222", "casex_bbbb2222", "casex_bbbb2222"],
                        ["u_cccc3333", "CASEX_cccc3333", "casex_cccc3333"],
                        ["u_dddd4444", "other", "other"]]
        with pytest.raises(subprocess.CalledProcessError):
            psql(f"INSERT INTO {schema}.users (user_id, username, username_key) "
                 "VALUES ('u_e', 'CASEx', 'casex')")
    finally:
        psql(f"DROP SCHEMA {schema} CASCADE")
