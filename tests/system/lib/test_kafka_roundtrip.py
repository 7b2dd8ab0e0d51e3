"""A record produced through lib/ (acks=all, idempotent) is read back by an independent client,
on the partition Java's default partitioner would pick for its key."""
import json
import subprocess
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kchat_testkit.stack import BUILD
from kchat_testkit.wire import java_partition

PARTITIONS = 6


def test_produce_through_lib_consume_with_confluent_kafka(brokers):
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        fut.result()

    count = 200
    prefix = uuid.uuid4().hex[:6]
    out = subprocess.run([str(BUILD / "tests" / "tools" / "kc-produce"),
                          f"--kafka-brokers={brokers}", f"--topic={topic}",
                          f"--count={count}", f"--prefix={prefix}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    produced = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(produced) == count
    assert all(p["error"] is None for p in produced)

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"verify-{prefix}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = {}
    idle = 0
    while len(seen) < count and idle < 100:
        msg = consumer.poll(0.2)
        if msg is None:
            idle += 1
            continue
        assert msg.error() is None, msg.error()
        seen[msg.key().decode()] = (msg.value().decode(), msg.partition(), msg.offset())
    consumer.close()

    assert len(seen) == count
    for p in produced:
        value, partition, offset = seen[p["key"]]
        assert value == p["value"]
        assert (partition, offset) == (p["partition"], p["offset"])
        # murmur2_random with a key is Java's murmur2 partitioner.
        assert partition == java_partition(p["key"].encode(), PARTITIONS)
    for fut in admin.delete_topics([topic]).values():
        fut.result()
