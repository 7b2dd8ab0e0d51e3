"""docs/analytics.md's examples, run as written against the stack: a reader of chat.events
from outside kchat (confluent-kafka, fastavro, read_committed, schemas/registry.json) and kcat.
What they print about one conversation seeded here is checked against how the doc says the
log is keyed, partitioned and numbered."""
import io
import json
import os
import re
import struct
import subprocess
import sys
import uuid

import fastavro
from confluent_kafka import Consumer

from kchat_testkit.stack import ROOT
from kchat_testkit.wire import (BY_ID, body, command, decode, events_of, java_partition,
                                 read_topic, send_message)

DOC = (ROOT / "docs" / "analytics.md").read_text()


def code_block(lang, section):
    """The first ```lang block after the heading `section`."""
    rest = DOC.split(section + "\n", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", rest, re.S).group(1)


def seed(commands, brokers):
    convo = f"an-{uuid.uuid4().hex[:12]}"
    commands.send(command(convo, "u1", "CreateConversation",
                          {"title": "analytics", "members": ["u2"]}, origin="api:0"))
    for i in range(3):
        commands.send(send_message(convo, ("u1", "u2")[i % 2], f"m{i}", f"message {i}"))
    commands.flush()
    events_of(brokers, convo,
              lambda got: sum(body(v)[0] == "MessageCreated" for _, v in got) == 3)
    return convo


def partitions_of(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "analytics-test"})
    try:
        return len(c.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        c.close()


def test_the_python_example_reads_the_log_as_the_doc_says(commands, brokers, tmp_path):
    convo = seed(commands, brokers)
    script = tmp_path / "example.py"
    script.write_text(code_block("python", "## Reading it in Python"))
    r = subprocess.run([sys.executable, str(script), convo], cwd=ROOT,
                       env={**os.environ, "KAFKA": brokers}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    *mine, last = r.stdout.strip().splitlines()
    summary = json.loads(last)
    rows = [re.fullmatch(r"partition (\d+) offset (\d+): (\w+) (.*)", line).groups()
            for line in mine]
    assert [kind for _, _, kind, _ in rows] == ["ConversationCreated"] + ["MessageCreated"] * 3
    # one partition, the Java client's for the key; offsets rising; seq_no 1, 2, 3
    assert {int(p) for p, _, _, _ in rows} == {
        java_partition(convo.encode(), partitions_of(brokers, "chat.events"))}
    offsets = [int(o) for _, o, _, _ in rows]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4
    msgs = [json.loads(b) for _, _, kind, b in rows if kind == "MessageCreated"]
    assert [m["seq_no"] for m in msgs] == [1, 2, 3]
    assert [m["content"] for m in msgs] == ["message 0", "message 1", "message 2"]
    # the whole log: every conversation's messages numbered in line
    assert summary["by_kind"]["MessageCreated"] >= 3
    assert summary["conversations_with_messages"] >= 1
    assert summary["conversations_out_of_line"] == 0, summary
    assert summary["events"] == sum(summary["by_kind"].values())


def test_the_kcat_example_shows_a_conversation_in_one_partition(commands, brokers):
    convo = seed(commands, brokers)
    r = subprocess.run(["bash", "-c", code_block("sh", "## Looking with kcat")],
                       env={**os.environ, "KAFKA": brokers}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    mine = [line.split(" ") for line in r.stdout.splitlines() if line.endswith(" " + convo)]
    assert len(mine) == 4, r.stdout[-2000:]  # created, and three messages
    assert {int(p) for p, _, _ in mine} == {
        java_partition(convo.encode(), partitions_of(brokers, "chat.events"))}
    offsets = [int(o) for _, o, _ in mine]
    assert offsets == sorted(offsets)


def test_a_plain_decoder_tells_every_kind_apart(commands, brokers):
    """A decoder that drops the names of union members (fastavro's default, most
    tools' JSON) still tells MessageDeleted from ReadMarkerSet, which hold the same fields:
    the envelope's type names the body."""
    convo = seed(commands, brokers)
    commands.send(command(convo, "u1", "DeleteMessage", {"seq_no": 1}))
    commands.send(command(convo, "u2", "SetReadMarker", {"seq_no": 3}))
    commands.flush()
    raw = [m.value() for m, _ in read_topic(
        brokers, "chat.events", lambda k, v, m: k == convo.encode(),
        lambda got: len(got) >= 6)]
    plain = []
    for value in raw:
        magic, schema_id = struct.unpack(">bI", value[:5])
        plain.append(fastavro.schemaless_reader(io.BytesIO(value[5:]), BY_ID[schema_id], None))
    assert [e["type"] for e in plain] == ["ConversationCreated"] + ["MessageCreated"] * 3 + [
        "MessageDeleted", "ReadMarkerSet"]
    # the bodies alone cannot say it
    assert plain[4]["body"] == {"seq_no": 1} and plain[5]["body"] == {"seq_no": 3}
    named = [body(decode(v))[0] for v in raw]
    assert named == [e["type"] for e in plain]
