"""The three-node KRaft cluster (KCHAT_KAFKA_NODES=3): three brokers that are the controller
quorum, every kchat topic with replication factor 3 and min.insync.replicas 2, unclean leader
election off; acks=all writes go on with a node killed, are not acknowledged with two, and a
killed node rejoins.

When the stack runs three nodes these tests use its cluster (and bring back any daemon that
the faults stopped). Otherwise they start a three-node cluster of their own through
scripts/kafka.sh, in a temporary state folder on free ports, and stop it at the end, so that
`make test` always runs them. Every check reads the cluster through an independent client
(confluent-kafka, Kafka's own MetadataQuorumCommand). The sanitizer pass runs only the
kchatctl check: the rest exercises no C code that the other tests do not.
"""
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from kchat_testkit.stack import BUILD, ENV, ROOT

KAFKA_SH = ROOT / "scripts" / "kafka.sh"
KCHATCTL = BUILD / "ctl" / "kchatctl"
SANITIZE = os.environ.get("SANITIZE") == "1"
STACK_NODES = int(ENV.get("KCHAT_KAFKA_NODES", "1"))
# Port bases other stacks on this machine use (make run, make test, the sanitizer pass, the
# benchmarks and their baseline): each takes base .. base + 299.
TAKEN_BASES = (17000, 26500, 26700, 27000, 27500, 28000, 29000)

needs_cluster = pytest.mark.skipif(
    SANITIZE, reason="the sanitizer pass runs only the kchatctl check of this module")


def spec_topics():
    return json.loads((ROOT / "kafka" / "topics.json").read_text())["topics"]


def free_block(n=9):
    """A port p with p .. p+n-1 free on 127.0.0.1, below the ephemeral range and away from
    the port ranges of the stacks this machine runs."""
    taken = list(TAKEN_BASES) + [int(ENV.get("KCHAT_PORT_BASE", "27000"))]
    rng = random.Random()
    for _ in range(200):
        p = rng.randrange(20000, 32000 - n)
        if any(b <= p + n and p < b + 300 for b in taken):
            continue
        socks = []
        try:
            for port in range(p, p + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no 9 free ports in a row below 32000")


class Cluster:
    """Three nodes run by scripts/kafka.sh with the environment `env`."""

    def __init__(self, env, own):
        self.env = env
        self.own = own
        self.brokers = self.sh_env("KCHAT_KAFKA_BROKERS")

    def sh_env(self, name):
        """A variable as scripts/env.sh sets it in this cluster's environment."""
        out = subprocess.run(["bash", "-c", f'. "$0" && printf %s "${name}"',
                              str(ROOT / "scripts" / "env.sh")],
                             env=self.env, check=True, capture_output=True, text=True)
        return out.stdout

    def kafka_sh(self, *args, check=True, timeout=240):
        r = subprocess.run([str(KAFKA_SH), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if check:
            assert r.returncode == 0, f"kafka.sh {' '.join(args)}: {r.stdout}{r.stderr}"
        return r

    def kchatctl(self, *args):
        """kchatctl with the environment of scripts/env.sh (its KCHAT_REPLICATION_FACTOR and
        KCHAT_MIN_INSYNC_REPLICAS among it), as scripts/stack.sh runs it."""
        return subprocess.run(["bash", "-c", '. "$0" && shift && exec "$@"',
                               str(ROOT / "scripts" / "env.sh"), "_", str(KCHATCTL), *args],
                              env=self.env, capture_output=True, text=True, timeout=120)

    def pid(self, node):
        return int(self.kafka_sh("pid", str(node)).stdout.strip())

    def kill(self, node):
        pid = self.pid(node)
        os.kill(pid, 9)
        deadline = time.time() + 10
        while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
            # not our child: gone once its status is no longer readable or it is a zombie
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        break
            except OSError:
                break
            time.sleep(0.05)


def own_cluster_env(state):
    """This process's environment without any KCHAT_* setting of the stack, with a state
    folder and three nodes on free ports of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KCHAT_") or k in ("KCHAT_BUILD_DIR", "KCHAT_CACHE_DIR",
                                                   "KCHAT_KAFKA_HEAP_OPTS", "JAVA")}
    p = free_block()
    env.update(KCHAT_STATE_DIR=str(state), KCHAT_KAFKA_NODES="3", KCHAT_KAFKA_PORT=str(p),
               KCHAT_KAFKA_CONTROLLER_PORT=str(p + 1), KCHAT_KAFKA_SASL_PORT=str(p + 2))
    return env


@pytest.fixture(scope="module")
def cluster():
    if STACK_NODES == 3:
        c = Cluster(dict(os.environ), own=False)
        yield c
        # The faults may have stopped a daemon (a transaction the broker could not finish is
        # fatal to the processor): nodes and daemons back as they were.
        c.kafka_sh("start")
        subprocess.run([str(ROOT / "scripts" / "stack.sh"), "up"], env=c.env, check=True,
                       capture_output=True, timeout=300)
        return
    state = tempfile.mkdtemp(prefix="kchat-kafka3-")
    env = own_cluster_env(state)
    c = None
    try:
        c = Cluster(env, own=True)
        c.kafka_sh("start")
        applied = c.kchatctl("topics", f"--topics-file={ROOT / 'kafka' / 'topics.json'}")
        assert applied.returncode == 0, applied.stderr
        yield c
    finally:
        subprocess.run([str(KAFKA_SH), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def admin(cluster):
    return AdminClient({"bootstrap.servers": cluster.brokers})


def partitions_of(admin, topic):
    return admin.list_topics(topic, timeout=10).topics[topic].partitions


def has_leader(admin, topic):
    """Partition 0 of topic has a leader (a topic just created may not be in the metadata of
    the broker asked yet)."""
    parts = partitions_of(admin, topic)
    return 0 in parts and parts[0].leader > 0


def wait_for(what, cond, timeout=90):
    deadline = time.time() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.time() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def produce(brokers, topic, value, timeout_s, retries=True):
    """One record with acks=all; the delivery report's error (None when acknowledged)."""
    conf = {"bootstrap.servers": brokers, "acks": "all", "message.timeout.ms": timeout_s * 1000,
            "enable.idempotence": False, "log_level": 0}
    if not retries:
        conf["retries"] = 0
    p = Producer(conf)
    out = {}
    p.produce(topic, value.encode(), callback=lambda err, msg: out.setdefault("err", err))
    p.flush(timeout_s + 10)
    assert "err" in out, "no delivery report"
    return out["err"]


def read_all(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "kchat-cluster-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "log_level": 0})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        values, idle = [], time.time() + 5
        while time.time() < idle:
            m = c.poll(0.5)
            if m is not None and not m.error():
                values.append(m.value().decode())
                idle = time.time() + 2
        return values
    finally:
        c.close()


@needs_cluster
def test_three_brokers_answer(cluster, admin):
    md = admin.list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]
    assert len(cluster.brokers.split(",")) == 3


@needs_cluster
def test_the_quorum_is_the_three_nodes(cluster):
    out = cluster.kafka_sh("run-class", "org.apache.kafka.tools.MetadataQuorumCommand",
                           f"--bootstrap-server={cluster.brokers}", "describe", "--status").stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    voters = json.loads(fields["CurrentVoters"].strip())
    assert sorted(v["id"] for v in voters) == [1, 2, 3], out
    assert int(fields["LeaderId"]) in (1, 2, 3), out
    assert json.loads(fields["CurrentObservers"].strip()) == [], out


@needs_cluster
def test_every_kchat_topic_has_rf_3_min_isr_2_and_no_unclean_election(admin):
    for t in spec_topics():
        parts = partitions_of(admin, t["name"])
        assert len(parts) == t["partitions"], t["name"]
        for p in parts.values():
            assert len(p.replicas) == 3, (t["name"], p.id, p.replicas)
            assert sorted(p.isrs) == sorted(p.replicas), (t["name"], p.id, p.isrs)
    res = [ConfigResource("topic", t["name"]) for t in spec_topics()]
    for r, fut in admin.describe_configs(res).items():
        cfg = fut.result()
        assert cfg["min.insync.replicas"].value == "2", r.name
        assert cfg["unclean.leader.election.enable"].value == "false", r.name
        # the rest of the spec is applied as written
        want = next(t for t in spec_topics() if t["name"] == r.name)["config"]
        for key, value in want.items():
            if key != "min.insync.replicas":
                assert cfg[key].value == value, (r.name, key)


@needs_cluster
def test_the_brokers_and_internal_topics_are_sized_for_three(cluster, admin):
    for node in ("1", "2", "3"):
        cfg = list(admin.describe_configs([ConfigResource("broker", node)]).values())[0].result()
        assert cfg["offsets.topic.replication.factor"].value == "3"
        assert cfg["transaction.state.log.replication.factor"].value == "3"
        assert cfg["transaction.state.log.min.isr"].value == "2"
        assert cfg["default.replication.factor"].value == "3"
        assert cfg["min.insync.replicas"].value == "2"
        assert cfg["unclean.leader.election.enable"].value == "false"
    # a transaction and a group commit make both internal topics exist
    scratch = "kchat.cluster.txn." + uuid.uuid4().hex[:8]
    for f in admin.create_topics([NewTopic(scratch, 1, 3)]).values():
        f.result()
    wait_for("a leader", lambda: has_leader(admin, scratch))
    p = Producer({"bootstrap.servers": cluster.brokers, "transactional.id":
                  "kchat-cluster-" + uuid.uuid4().hex, "log_level": 0})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(scratch, b"cluster test")
    p.commit_transaction(60)
    c = Consumer({"bootstrap.servers": cluster.brokers, "group.id":
                  "kchat-cluster-" + uuid.uuid4().hex, "log_level": 0})
    c.commit(offsets=[TopicPartition(scratch, 0, 1)], asynchronous=False)
    c.close()
    for f in admin.delete_topics([scratch]).values():
        f.result()
    for topic in ("__consumer_offsets", "__transaction_state"):
        for part in partitions_of(admin, topic).values():
            assert len(part.replicas) == 3, (topic, part.id)
    cfg = list(admin.describe_configs(
        [ConfigResource("topic", "__transaction_state")]).values())[0].result()
    assert cfg["min.insync.replicas"].value == "2"


@needs_cluster
def test_kchatctl_applies_the_cluster_settings_once(cluster):
    again = cluster.kchatctl("topics", f"--topics-file={ROOT / 'kafka' / 'topics.json'}")
    assert again.returncode == 0, again.stderr
    assert all(line.split()[-1] == "unchanged" for line in again.stdout.splitlines()), again.stdout
    assert "replication factor" not in again.stderr


@needs_cluster
def test_acks_all_survives_one_node_is_refused_with_two_and_the_nodes_rejoin(cluster, admin):
    topic, strict = "kchat.cluster." + uuid.uuid4().hex[:8], "kchat.cluster3." + uuid.uuid4().hex[:8]
    futs = admin.create_topics([
        NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"}),
        # min ISR 3: refused as soon as one node is out of the ISR
        NewTopic(strict, 1, 3, config={"min.insync.replicas": "3"})])
    for f in futs.values():
        f.result()
    try:
        wait_for("leaders", lambda: all(has_leader(admin, t) for t in (topic, strict)))
        assert produce(cluster.brokers, topic, "all three", 30) is None

        # kill -9 the partition's leader: a follower takes over, acks=all goes on with two copies
        first = partitions_of(admin, topic)[0].leader
        cluster.kill(first)
        assert produce(cluster.brokers, topic, "one killed", 60) is None
        part = partitions_of(admin, topic)[0]
        assert part.leader != first
        # once the controller has fenced it, the node is out of every ISR ...
        wait_for("the ISR without the killed node",
                 lambda: all(first not in partitions_of(admin, t)[0].isrs for t in (topic, strict)))
        # ... and a topic that needs three copies refuses the write: min.insync.replicas at work
        err = produce(cluster.brokers, strict, "needs three", 20, retries=False)
        assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err

        # kill a second node (not the leader): the quorum has lost its majority, so the ISR
        # cannot shrink to the one node left; the leader holds the write for the dead
        # follower and it is never acknowledged
        leader = partitions_of(admin, topic)[0].leader
        second = next(n for n in (1, 2, 3) if n not in (first, leader))
        cluster.kill(second)
        err = produce(cluster.brokers, topic, "two killed", 15, retries=False)
        assert err is not None, "acknowledged with two of three nodes killed"
        assert err.code() in (KafkaError._MSG_TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
                              KafkaError.NOT_ENOUGH_REPLICAS), err
        # and no reader sees it: the high watermark stays where two copies were
        assert read_all(cluster.brokers, topic) == ["all three", "one killed"]

        # both come back and rejoin: three brokers, every ISR whole again
        cluster.kafka_sh("start")
        wait_for("three brokers", lambda: sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3])
        watched = [topic, strict] + [t["name"] for t in spec_topics()]
        wait_for("every ISR back to three", lambda: all(
            len(p.isrs) == 3 for t in watched for p in partitions_of(admin, t).values()))
        assert produce(cluster.brokers, topic, "rejoined", 60) is None
        assert produce(cluster.brokers, strict, "all three again", 60) is None
    finally:
        cluster.kafka_sh("start", check=False)
        for f in admin.delete_topics([topic, strict]).values():
            try:
                f.result()
            except Exception:  # noqa: BLE001 - cleanup only
                pass


def test_kchatctl_overrides_against_the_stack(brokers):
    """The stack's broker(s): the override flags change nothing when they say what the
    topics are, and a min.insync.replicas above the replication factor is refused before
    anything is touched. (Runs in the sanitizer pass: it is kchatctl's code path.)"""
    rf, isr = (3, 2) if STACK_NODES == 3 else (1, 1)

    def ctl(*args):
        return subprocess.run([str(KCHATCTL), "topics", f"--kafka-brokers={brokers}",
                               f"--topics-file={ROOT / 'kafka' / 'topics.json'}", *args],
                              capture_output=True, text=True, timeout=120)

    same = ctl(f"--replication-factor={rf}", f"--min-insync-replicas={isr}")
    assert same.returncode == 0, same.stderr
    assert all(line.split()[-1] == "unchanged" for line in same.stdout.splitlines()), same.stdout
    bad = ctl(f"--replication-factor={rf}", f"--min-insync-replicas={rf + 1}")
    assert bad.returncode == 1
    assert f"min.insync.replicas {rf + 1} exceeds its replication factor {rf}" in bad.stderr
    assert bad.stdout == ""
    admin = AdminClient({"bootstrap.servers": brokers})
    res = [ConfigResource("topic", t["name"]) for t in spec_topics()]
    for r, fut in admin.describe_configs(res).items():
        assert fut.result()["min.insync.replicas"].value == str(isr), r.name
    out_of_range = ctl("--replication-factor=17")
    assert out_of_range.returncode == 2, out_of_range.stderr
