"""kchat's topics seen from outside: Confluent-framed Avro written and read with fastavro and
confluent-kafka, and the Java client's partitioner, independent of the C code under test."""
import io
import json
import struct
import time
import uuid

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition

from .stack import ROOT

SCHEMAS = ROOT / "schemas"
REGISTRY = json.loads((SCHEMAS / "registry.json").read_text())
BY_ID = {}
NEWEST = {}
for subject, versions in REGISTRY["subjects"].items():
    for v in versions:
        parsed = fastavro.parse_schema(json.loads((SCHEMAS / v["file"]).read_text()))
        BY_ID[v["id"]] = parsed
    last = max(versions, key=lambda v: v["version"])
    NEWEST[subject] = (last["id"], BY_ID[last["id"]])


def encode(subject, record):
    schema_id, schema = NEWEST[subject]
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def decode(data):
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    return fastavro.schemaless_reader(io.BytesIO(data[5:]), BY_ID[schema_id], None,
                                      return_record_name=True)


def command(convo, sender, body_name, body, origin="gateway:0", command_id=None):
    return {"command_id": command_id or str(uuid.uuid4()), "convo_id": convo, "sender_id": sender,
            "issued_at": int(time.time() * 1000), "origin": origin,
            "body": (f"io.kchat.{body_name}", body)}


def send_message(convo, sender, client_msg_id, content="hello", origin="gateway:0"):
    return command(convo, sender, "SendMessage",
                   {"client_msg_id": client_msg_id, "content": content,
                    "content_type": "text/plain"}, origin)


class Commands:
    """A producer of commands, keyed by conversation with the Java-compatible partitioner."""

    def __init__(self, brokers):
        self.p = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random",
                           "enable.idempotence": True, "acks": "all", "linger.ms": 5})

    def send(self, cmd):
        self.send_raw(cmd["convo_id"].encode(), encode("chat.commands-value", cmd))

    def send_raw(self, key, value, topic="chat.commands"):
        while True:
            try:
                self.p.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.p.poll(0.05)

    def flush(self):
        assert self.p.flush(60) == 0


def _consumer(brokers, topic, partitions):
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = partitions if partitions is not None else list(md.topics[topic].partitions)
    return c, parts


def _collect(c, match, got):
    """Polls one record into got when match(key, value, msg) holds; skips undecodable ones."""
    msg = c.poll(0.2)
    if msg is None or msg.error():
        return
    try:
        value = decode(msg.value()) if msg.value() else None
    except Exception:  # poison records, written on purpose by some tests
        return
    if match(msg.key(), value, msg):
        got.append((msg, value))


def read_topic(brokers, topic, match, until, timeout=90.0, partitions=None):
    """Reads `topic` (read_committed) from the start; collects decoded values for which
    match(key, value, msg) holds, until until(collected) or the timeout."""
    c, parts = _consumer(brokers, topic, partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(got):
            _collect(c, match, got)
        return got
    finally:
        c.close()


def read_to_end(brokers, topic, match, timeout=180.0, partitions=None):
    """Like read_topic, but reads every partition up to the end it had when called (its high
    watermark then), however long the topic: a time limit alone would cut a long topic short
    on a busy machine. Fails on the timeout."""
    c, parts = _consumer(brokers, topic, partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            pos = {tp.partition: tp.offset
                   for tp in c.position([TopicPartition(topic, p) for p in parts])}
            if all(ends[p] == 0 or pos[p] >= ends[p] for p in parts):
                return got
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout} s"
            _collect(c, match, got)
    finally:
        c.close()


def events_of(brokers, convo, until, timeout=90.0):
    key = convo.encode()
    return [v for _, v in read_topic(brokers, "chat.events", lambda k, v, m: k == key, until,
                                     timeout)]


def body(event):
    """(record name, fields) of an event's body."""
    name, fields = event["body"]
    return name.rsplit(".", 1)[-1], fields


def delivery_items(value):
    """The deliveries a decoded Delivery record holds, in order: a version-2 batch's items, or
    the one delivery of a version-1 record (whose fields are at the top level)."""
    if value.get("items"):
        return [dict(it) for it in value["items"]]
    return [{"convo_id": value["convo_id"], "recipients": value["recipients"],
             "event": value["event"], "ack": value["ack"], "actor_slots": []}]


def read_deliveries(brokers, match, until, partitions=None, timeout=90.0, to_end=False):
    """Reads chat.deliveries (read_committed) from the start and returns (partition, item) for
    every delivery item for which match(item) holds, until until(collected); with to_end, reads
    every partition to the end it had when called instead."""
    got = []

    def keep(k, v, m):
        for it in delivery_items(v):
            if match(it):
                got.append((m.partition(), it))
        return False

    if to_end:
        read_to_end(brokers, "chat.deliveries", keep, timeout=timeout, partitions=partitions)
    else:
        read_topic(brokers, "chat.deliveries", keep, lambda _: until(got), timeout=timeout,
                   partitions=partitions)
    return got


def java_murmur2(data: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, written from its definition."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (java_murmur2(key) & 0x7FFFFFFF) % partitions
