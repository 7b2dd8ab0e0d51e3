"""The archive of kchat's topics, drilled. kchat-archiver writes chat.events, chat.accounts
and chat.audit of the live stack into MinIO as Avro object container files; it is killed
with SIGKILL on the way and started again, and the archive still holds every record once:
no object overlaps another, and the small topics' objects hold exactly the topics' records
(fastavro, and polars for an events object). `kchatctl restore` replays the archive into
empty topics beside the live ones (same keys, partitions, order, headers and timestamps),
carrying event_skips over to the new offsets; a projector of its own (a fresh database, a
Redis of its own) builds the read models from the restored chat.events alone, and they equal
the live ones, table by table and key by key.

The sanitizer pass archives and restores the two smaller topics only, without the read
models: it checks the archiver's and the restore's C paths, which the plain pass has
already shown to rebuild equal models from all of chat.events."""
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

import fastavro
import polars
import psycopg
import redis as redislib
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kchat_testkit.api import (User, minio, minio_credentials, s3_env, s3_where, send_all,
                               wait_last_seq)
from kchat_testkit.daemon import Daemon
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import BUILD, DAEMONS, ENV, ROOT

FULL = os.environ.get("SANITIZE") != "1"
TOPICS = ["chat.events", "chat.accounts", "chat.audit"] if FULL else ["chat.accounts",
                                                                      "chat.audit"]
BUCKET = os.environ["KCHAT_S3_BUCKET"]


def ctl(*args):
    return subprocess.run([str(BUILD / "ctl" / "kchatctl"), *map(str, args)],
                          capture_output=True, text=True, env=s3_env(), timeout=600)


def archiver(prefix, group, spool, port):
    d = Daemon(BUILD / "archiver" / "kchat-archiver",
               [f"--admin-port={port}", f"--kafka-brokers={ENV['KCHAT_KAFKA_BROKERS']}",
                *s3_where(), f"--archive-prefix={prefix}", f"--group-id={group}",
                f"--spool-dir={spool}", "--roll-bytes=2097152", "--roll-age-s=1",
                f"--archive-topics={','.join(TOPICS)}",
                # the killed one's partitions go to the next one sooner
                "--session-timeout-ms=6000"],
               env=s3_env())
    assert d.healthy(f"http://127.0.0.1:{port}", "the archiver healthy"), \
        d.log_path.read_text()[-2000:]
    return d


def listing(prefix):
    """{(topic, partition): [(first, last, key)]} of the archive, each list in offset order."""
    s3, out, token = minio(), {}, None
    while True:
        kw = {"Bucket": BUCKET, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        r = s3.list_objects_v2(**kw)
        for o in r.get("Contents", []):
            topic, part, name = o["Key"][len(prefix):].split("/")
            first, last = name[:-len(".avro")].split("-")
            out.setdefault((topic, int(part)), []).append((int(first), int(last), o["Key"]))
        if not r.get("IsTruncated"):
            break
        token = r["NextContinuationToken"]
    return {k: sorted(v) for k, v in out.items()}


def consumer():
    return Consumer({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"], "group.id": "unused",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "enable.partition.eof": True})


def partitions(topic):
    c = consumer()
    try:
        return sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        c.close()


def last_records(topic):
    """{partition: offset of its last record} (transaction markers are not records)."""
    c, out = consumer(), {}
    try:
        for p in partitions(topic):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            back = 8
            while high > low and p not in out:
                start = max(low, high - back)
                c.assign([TopicPartition(topic, p, start)])
                while True:
                    m = c.poll(10)
                    assert m is not None, f"{topic} [{p}] read to its end"
                    if m.error():
                        assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                        break
                    out[p] = m.offset()
                if start == low:
                    break
                back *= 8
    finally:
        c.close()
    return out


def records(topic):
    """{partition: [(offset, key, value, headers, timestamp)]}, all of the topic."""
    c, out = consumer(), {}
    try:
        parts = partitions(topic)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        done = {p for p in parts if ends[p] == 0}
        while len(done) < len(parts):
            m = c.poll(10)
            assert m is not None, f"{topic} read to its end"
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                done.add(m.partition())
                continue
            out.setdefault(m.partition(), []).append(
                (m.offset(), m.key(), m.value(), m.headers() or [], m.timestamp()[1]))
    finally:
        c.close()
    return out


def archived_records(objs):
    s3, got = minio(), []
    for first, last, key in objs:
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        recs = list(fastavro.reader(io.BytesIO(data)))
        assert recs[0]["offset"] == first and recs[-1]["offset"] == last, key
        got += recs
    return got


def pg_digest(dsn):
    """Per table of the Postgres read model, its rows and an MD5 of them in order."""
    cols = {"conversations": "convo_id, title, created_by, created_at, last_seq, last_activity, "
                             "topic",
            "members": "convo_id, user_id, joined_at, read_seq, role",
            "departures": "convo_id, user_id, left_seq, left_at",
            "messages": "convo_id, seq_no, server_msg_id, sender_id, client_msg_id, content, "
                        "content_type, created_at, edited_at, deleted_at, edit_count, reply_to, "
                        "attachments",
            "reactions": "convo_id, seq_no, user_id, emoji"}
    out = {}
    with psycopg.connect(dsn) as conn:
        for table, c in cols.items():
            out[table] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                f"FROM (SELECT {c} FROM rm.{table}) t").fetchone()
    return out


def redis_digest(r):
    """Every key of the Redis read model's generation but its offsets, canonically hashed."""
    gen = r.get("kchat:rm:gen")
    assert gen, "kchat:rm:gen is set"
    prefix, h, n = f"kchat:rm:{gen}:", hashlib.sha256(), 0
    for key in sorted(r.scan_iter(match=f"kchat:rm:{gen}:*", count=1000)):
        name = key[len(prefix):]
        if name == "offsets":
            continue
        t = r.type(key)
        if t == "hash":
            v = sorted(r.hgetall(key).items())
        elif t == "set":
            v = sorted(r.smembers(key))
        elif t == "zset":
            v = r.zrange(key, 0, -1, withscores=True)
        elif t == "string":
            v = r.get(key)
        else:
            v = t
        h.update(json.dumps([name, t, v]).encode())
        n += 1
    return n, h.hexdigest()


def projected_to_end(dsn, topic):
    """Whether the projector behind dsn has applied topic up to its end."""
    c = consumer()
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions(topic)}
    finally:
        c.close()
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('rm.offsets')").fetchone()[0] is None:
            return False  # the projector has not made its schema yet
        at = dict(conn.execute("SELECT partition, next_offset FROM rm.offsets WHERE topic = %s",
                               (topic,)).fetchall())
    return all(at.get(p, 0) >= e for p, e in ends.items())


def test_the_archive_survives_a_kill_and_restores_into_equal_read_models(commands, tmp_path):
    # Activity of every kind, so that the read models have something of each to compare.
    alice, bob, carol = User(), User(), User()
    cid = alice.post("/conversations", {"title": "archived", "members": [bob.id, carol.id]}).json["id"]
    send_all(commands, cid, bob, [f"to be archived {i}" for i in range(20)])
    wait_last_seq(alice, cid, 20)
    assert alice.react(cid, 3, "\U0001F44D").status == 200
    assert bob.delete(f"/conversations/{cid}/messages/4").status == 200
    assert alice.patch(f"/conversations/{cid}/members/{bob.id}", {"role": "admin"}).status == 200
    assert bob.delete(f"/conversations/{cid}/members/{carol.id}").status == 204
    wait_until(lambda: alice.get(f"/conversations/{cid}").json["roles"].get(bob.id) == "admin"
               and carol.id not in alice.get(f"/conversations/{cid}").json["members"],
               "the changes applied")

    run = uuid.uuid4().hex[:10]
    prefix, group, drill = f"drill-{run}/", f"archiver-{run}", f"drill-{run}."
    spool = tmp_path / "spool"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    # Killed once objects are being written; the next one resumes where the archive ends.
    first = archiver(prefix, group, spool, port)
    try:
        wait_until(lambda: len(listing(prefix).get((TOPICS[0], 0), [])) >= (2 if FULL else 1),
                   f"objects of {TOPICS[0]}", timeout=120)
    finally:
        first.kill()
        first.wait()
    ends = {t: last_records(t) for t in TOPICS}
    second = archiver(prefix, group, spool, port)
    try:
        def complete():
            have = listing(prefix)
            return all(have.get((t, p)) and have[(t, p)][-1][1] >= last
                       for t in TOPICS for p, last in ends[t].items())
        wait_until(complete, "the archive up to the end of every topic", timeout=300)
        assert metric(base, "kchat_archiver_upload_errors_total") == 0
        assert 'resume' in second.log_path.read_text()
    finally:
        assert second.stop() == 0, second.log_path.read_text()[-2000:]
    archive = listing(prefix)
    for (topic, p), objs in archive.items():
        for (_, last, a), (nxt, _, b) in zip(objs, objs[1:]):
            assert nxt > last, f"{a} and {b} overlap: a restart wrote records twice"

    # The small topics' archive holds their records, each once, as they are in Kafka (up to
    # where it ends: an account registered since is for the next object).
    archived_live = {}
    for topic in ("chat.accounts", "chat.audit"):
        live = records(topic)
        for p, recs in live.items():
            got = archived_records(archive[(topic, p)])
            recs = archived_live[(topic, p)] = [x for x in recs if x[0] <= got[-1]["offset"]]
            assert [r["offset"] for r in got] == [o for o, *_ in recs], (topic, p)
            assert [(r["key"], r["value"], r["timestamp"]) for r in got] == \
                   [(k, v, ts) for _, k, v, _, ts in recs], (topic, p)
            assert all(r["schema_id"] == int.from_bytes(r["value"][1:5], "big") for r in got)
    # polars reads an object (of the events, in the plain pass) as a table
    s3 = minio()
    key = archive[(TOPICS[0], 0)][0][2]
    df = polars.read_avro(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    assert {"topic", "partition", "offset", "key", "value", "schema_id"} <= set(df.columns)
    assert df["offset"][0] == archive[(TOPICS[0], 0)][0][0]
    # docs/analytics.md's example, as written
    doc = (ROOT / "docs" / "analytics.md").read_text().split("## Files: the archive", 1)[1]
    script = tmp_path / "archive_example.py"
    script.write_text(re.search(r"```python\n(.*?)```", doc, re.S).group(1))
    creds = minio_credentials()
    ex = subprocess.run([sys.executable, str(script), key], capture_output=True, text=True,
                        timeout=120,
                        env={**os.environ, "BUCKET": BUCKET,
                             "S3_ENDPOINT": f"http://127.0.0.1:{ENV['KCHAT_MINIO_PORT']}",
                             "S3_REGION": ENV["KCHAT_S3_REGION"],
                             "S3_ACCESS_KEY": creds["KCHAT_S3_ACCESS_KEY"],
                             "S3_SECRET_KEY": creds["KCHAT_S3_SECRET_KEY"]})
    assert ex.returncode == 0, ex.stderr[-2000:]
    lines = ex.stdout.strip().splitlines()
    _, last, _ = archive[(TOPICS[0], 0)][0]
    assert lines[-1].split()[:2] == ["0", str(last)], lines[-3:]
    # (None: a record that is not in the wire format, written by a test of the projector)
    assert sum(1 for line in lines if re.fullmatch(r"0 \d+ \S+ (\d+|None)", line)) == len(df)

    # The restore, into empty topics beside the live ones.
    admin = AdminClient({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"]})
    new = [NewTopic(drill + t, num_partitions=len(partitions(t)), replication_factor=1)
           for t in TOPICS]
    for f in admin.create_topics(new, operation_timeout=30).values():
        f.result()
    db = f"kchat_drill_{run}"
    pg_admin = ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                ENV["KCHAT_PG_PORT"], "-U", "postgres", "-d", "postgres", "-c"]
    drill_dsn = f"host=127.0.0.1 port={ENV['KCHAT_PG_PORT']} dbname={db} user=kchat"
    redis_dir = tempfile.mkdtemp(prefix="kchat-drill-redis-")
    redis_port = free_port()
    redis_proc = projector = None
    try:
        r = ctl("restore", f"--kafka-brokers={ENV['KCHAT_KAFKA_BROKERS']}", *s3_where(),
                f"--archive-prefix={prefix}", f"--restore-topic-prefix={drill}",
                f"--restore-topics={','.join(TOPICS)}", "--restore-skips",
                f"--pg-dsn={ENV['KCHAT_PG_DSN']}")
        assert r.returncode == 0, r.stderr
        assert "restored" in r.stdout, r.stdout
        # twice is refused: the destination is no longer empty
        again = ctl("restore", f"--kafka-brokers={ENV['KCHAT_KAFKA_BROKERS']}", *s3_where(),
                    f"--archive-prefix={prefix}", f"--restore-topic-prefix={drill}",
                    f"--restore-topics={','.join(TOPICS)}")
        assert again.returncode == 1 and "not empty" in again.stderr, again.stderr
        for topic in ("chat.accounts", "chat.audit"):
            restored = records(drill + topic)
            assert {p: [x[1:] for x in v] for (t, p), v in archived_live.items() if t == topic} \
                == {p: [x[1:] for x in v] for p, v in restored.items()}, topic

        if not FULL:
            return
        # Read models from the restored chat.events alone: a database and a Redis of their own.
        subprocess.run([*pg_admin, f'CREATE DATABASE "{db}" OWNER kchat'], check=True,
                       capture_output=True)
        m = ctl("migrate", f"--pg-dsn={drill_dsn}",
                f"--migrations-dir={ROOT / 'db' / 'migrations'}")
        assert m.returncode == 0, m.stderr
        with psycopg.connect(ENV["KCHAT_PG_DSN"]) as src, psycopg.connect(drill_dsn) as dst:
            rows = src.execute("SELECT topic, partition, \"offset\", reason FROM event_skips "
                               "WHERE topic = %s", (drill + "chat.events",)).fetchall()
            live_skips = src.execute("SELECT count(*) FROM event_skips WHERE topic = "
                                     "'chat.events'").fetchone()[0]
            assert len(rows) == live_skips, "every skip carried over"
            for row in rows:
                dst.execute("INSERT INTO event_skips (topic, partition, \"offset\", reason) "
                            "VALUES (%s, %s, %s, %s)", row)
        redis_proc = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no",
                                       "--dir", redis_dir], stdout=subprocess.DEVNULL)
        rd = redislib.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
        wait_until(lambda: _pings(rd), "the drill's Redis")
        proj_port = free_port()
        projector = Daemon(DAEMONS["projector"]["binary"],
                           [f"--admin-port={proj_port}", f"--schemas-dir={ROOT / 'schemas'}",
                            f"--events-topic={drill}chat.events", f"--pg-dsn={drill_dsn}",
                            "--redis-host=127.0.0.1", f"--redis-port={redis_port}",
                            f"--group-id={drill}projector"])
        wait_until(lambda: projected_to_end(drill_dsn, drill + "chat.events"),
                   "the drill's projector at the end of the restored log", timeout=600)
        wait_until(lambda: projected_to_end(ENV["KCHAT_PG_DSN"], "chat.events"),
                   "the live projector at the end of chat.events", timeout=120)
        live_pg, drill_pg = pg_digest(ENV["KCHAT_PG_DSN"]), pg_digest(drill_dsn)
        assert drill_pg == live_pg
        assert live_pg["messages"][0] > 0 and live_pg["reactions"][0] > 0
        live_r = redislib.Redis(host="127.0.0.1", port=int(ENV["KCHAT_REDIS_PORT"]),
                                decode_responses=True)
        wait_until(lambda: redis_digest(rd) == redis_digest(live_r),
                   "the drill's Redis model equal to the live one", timeout=60)
        assert projector.stop() == 0
        projector = None
    finally:
        if projector:
            projector.stop(signal.SIGKILL)
        if redis_proc:
            redis_proc.kill()
            redis_proc.wait()
        shutil.rmtree(redis_dir, ignore_errors=True)
        subprocess.run([*pg_admin, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'],
                       capture_output=True)
        with psycopg.connect(ENV["KCHAT_PG_DSN"]) as conn:
            conn.execute("DELETE FROM event_skips WHERE topic LIKE %s", (drill + "%",))
        for f in admin.delete_topics([drill + t for t in TOPICS], operation_timeout=30).values():
            try:
                f.result()
            except Exception:  # noqa: BLE001 - a topic that was never made
                pass
        s3 = minio()
        for objs in listing(prefix).values():
            for _, _, key in objs:
                s3.delete_object(Bucket=BUCKET, Key=key)


def _pings(r):
    try:
        return r.ping()
    except redislib.exceptions.ConnectionError:
        return False
