#!/usr/bin/env python3
"""Processor measurements on a stack of its own (state .state-bench, ports from 26000):

  restore    how long restoring the state of N conversations (and as many dedupe entries) takes
             when the processor starts, as after kill -9: the state topic is filled with a
             checkpoint of them (ConvoStates, DedupeBlocks, a Checkpoint per partition) and
             chat.events with E messages written after it (which the restore replays); the
             processor's "state restored" log line gives the time, and /health is asked all
             along (it must answer while the restore runs);
  commit     for several --linger-ms values: end-to-end throughput (commands sent as fast as
             the client can, until the last event is readable by a read_committed consumer)
             and latency (issued_at to readable), median of the repetitions.

  bench/processor.py [--conversations 1000000] [--replay-events 100000] [--messages 30000]
                     [--reps 3] [--lingers 0,2,5] [--skip-restore] [--skip-commit]

It starts the stack with scripts/stack.sh, replaces the stack's processor with its own
instance for each setting, and stops everything at the end. Prints Markdown tables.
"""
import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KCHAT_STATE_DIR", str(ROOT / ".state-bench"))
os.environ.setdefault("KCHAT_PORT_BASE", "26000")
BASE = int(os.environ["KCHAT_PORT_BASE"])
BROKERS = f"127.0.0.1:{BASE + 10}"
BUILD = Path(os.environ.get("KCHAT_BUILD_DIR", ROOT / "build"))
STATE = Path(os.environ["KCHAT_STATE_DIR"])
sys.path.insert(0, str(ROOT / "pylib"))
os.environ.setdefault("KCHAT_BUILD_DIR", str(BUILD))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from kchat_testkit.daemon import Daemon, start  # noqa: E402
from kchat_testkit.stack import DAEMONS  # noqa: E402
from kchat_testkit.wire import (Commands, command, decode, encode, java_partition,  # noqa: E402
                                send_message)

PROCESSOR = DAEMONS["processor"]["binary"]

PARTITIONS = next(t["partitions"] for t in json.loads((ROOT / "kafka" / "topics.json").read_text())
                  ["topics"] if t["name"] == "chat.processor.state")


def stack(*args):
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def stop_stack_processor():
    pidfile = STATE / "run" / "processor.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        pidfile.unlink()


def processor_args(port):
    return [f"--admin-port={port}", f"--kafka-brokers={BROKERS}",
            f"--schemas-dir={ROOT / 'schemas'}"]


def start_processor(extra, log_path):
    port = BASE + 97
    return start(PROCESSOR, [*processor_args(port), *extra], f"http://127.0.0.1:{port}",
                 "the processor healthy", log_path)


def encode_state(record):
    return encode("chat.processor.state-value", record)


def produce_all(prod, topic, records):
    for part, key, val in records:
        while True:
            try:
                prod.produce(topic, key=key, value=val, partition=part)
                break
            except BufferError:
                prod.poll(0.05)


def bench_restore(conversations, replay_events):
    """Fills the state topic with a checkpoint of `conversations` conversations (3 members,
    last_seq 10, one dedupe entry each, in blocks of 2 000 as the processor writes them) and
    one Checkpoint per partition at the current end of chat.events, then writes
    `replay_events` messages to chat.events after it, and times the restore of a processor
    that owns every partition, asking its /health every 50 ms meanwhile."""
    import urllib.request
    stop_stack_processor()
    prod = Producer({"bootstrap.servers": BROKERS, "linger.ms": 20, "acks": "all",
                     "enable.idempotence": True, "queue.buffering.max.messages": 1000000})
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"bench-{uuid.uuid4().hex}"})
    ends = [c.get_watermark_offsets(TopicPartition("chat.events", p), timeout=10)[1]
            for p in range(PARTITIONS)]
    c.close()
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    convo_state = encode_state({"state": ("io.kchat.ConvoState",
                                          {"last_seq": 10, "members": ["u1", "u2", "u3"]})})
    blocks = {p: [] for p in range(PARTITIONS)}
    names = []
    for i in range(conversations):
        convo = f"bench-{tag}-{i}"
        part = java_partition(convo.encode(), PARTITIONS)
        names.append((convo, part))
        produce_all(prod, "chat.processor.state", [(part, b"c" + convo.encode(), convo_state)])
        blocks[part].append({"hash": os.urandom(16), "seq_no": 10, "created_at": now,
                             "convo_id": convo, "sender_id": "u1", "deleted": False})
    for part, entries in blocks.items():
        for n, k in enumerate(range(0, len(entries), 2000)):
            val = encode_state({"state": ("io.kchat.DedupeBlock",
                                          {"entries": entries[k:k + 2000]})})
            produce_all(prod, "chat.processor.state",
                        [(part, b"b" + struct.pack(">Q", n), val)])
        produce_all(prod, "chat.processor.state", [(part, b"o", encode_state(
            {"state": ("io.kchat.Checkpoint", {"events_offset": ends[part],
                                               "written_at": now})}))])
    assert prod.flush(300) == 0
    # Messages written after the checkpoint: the restore replays them.
    for i in range(replay_events):
        convo, part = names[i % len(names)]
        ev = {"event_id": str(uuid.uuid4()), "convo_id": convo, "actor_id": "u1",
              "occurred_at": now, "command_id": "c", "origin": "api:0",
              "body": ("io.kchat.MessageCreated", {
                  "seq_no": 11 + i // len(names), "server_msg_id": f"{convo}:{11 + i}",
                  "client_msg_id": f"r-{i}", "content": "replayed",
                  "content_type": "text/plain"})}
        produce_all(prod, "chat.events", [(part, convo.encode(),
                                            encode("chat.events-value", ev))])
    assert prod.flush(300) == 0
    log_path = STATE / "logs" / "bench-processor.log"
    port = BASE + 97
    # counted from the first 200 on (before it the process is still starting: its listener
    # not open yet, or its Kafka clients not connected)
    health = {"ok": 0, "other": 0, "slowest_ms": 0.0}
    p = Daemon(PROCESSOR, processor_args(port), log_path)
    entry, deadline = None, time.time() + 600
    while entry is None and time.time() < deadline and p.poll() is None:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                ok = r.status == 200
        except OSError:
            ok = False
        if ok or health["ok"]:
            health["ok" if ok else "other"] += 1
            health["slowest_ms"] = max(health["slowest_ms"],
                                       (time.monotonic() - t) * 1000)
        for e in p.entries():
            if e["msg"] == "state restored":
                entry = e
        time.sleep(0.05)
    p.stop(timeout=60)
    if entry is None:
        raise SystemExit("no restore line")
    entry["health"] = health
    return entry


class Reader:
    """Reads chat.events (read_committed) from its current end in a thread and notes when
    each of our messages became readable."""

    def __init__(self, keys):
        import threading
        self.keys, self.seen, self.stop = keys, {}, False
        self.c = Consumer({"bootstrap.servers": BROKERS, "group.id": f"bench-{uuid.uuid4().hex}",
                           "isolation.level": "read_committed", "enable.auto.commit": False,
                           "fetch.wait.max.ms": 5})
        md = self.c.list_topics("chat.events", timeout=10)
        ends = []
        for part in md.topics["chat.events"].partitions:
            _, hi = self.c.get_watermark_offsets(TopicPartition("chat.events", part), timeout=10)
            ends.append(TopicPartition("chat.events", part, hi))
        self.c.assign(ends)
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        while not self.stop:
            msgs = self.c.consume(500, 0.002)  # short waits: the time seen is the arrival
            now = time.time()
            for m in msgs:
                if m.error() or m.key() not in self.keys:
                    continue
                name, body = decode(m.value())["body"]
                if name.endswith("MessageCreated"):
                    self.seen[body["client_msg_id"]] = now

    def close(self):
        self.stop = True
        self.t.join()
        self.c.close()


def send_and_wait(convos, n, rate_per_s, tag):
    """Sends n messages (at rate_per_s, or as fast as possible when None) and waits until all
    are readable. Returns (messages/s from first send to last readable, latencies)."""
    reader = Reader({c.encode() for c in convos})
    cmds = Commands(BROKERS)
    sent_at = {}
    t0 = time.time()
    for i in range(n):
        cmid = f"{tag}-{i}"
        sent_at[cmid] = time.time()
        cmds.send(send_message(convos[i % len(convos)], "u1", cmid, "bench message"))
        if i % 200 == 0:
            cmds.p.poll(0)
            if rate_per_s:
                ahead = (i + 1) / rate_per_s - (time.time() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    cmds.flush()
    deadline = time.time() + 120
    while len(reader.seen) < n and time.time() < deadline:
        time.sleep(0.05)
    reader.close()
    if len(reader.seen) < n:
        raise SystemExit(f"only {len(reader.seen)} of {n} messages became readable")
    last = max(reader.seen.values())
    lat = sorted(reader.seen[k] - sent_at[k] for k in sent_at)
    return n / (last - t0), lat


def pct(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bench_commit(linger_ms, messages, paced, convos, reps):
    stop_stack_processor()
    p = start_processor([f"--linger-ms={linger_ms}"],
                        STATE / "logs" / f"bench-commit-{linger_ms}.log")
    try:
        rates, p50s, p99s = [], [], []
        for r in range(reps):
            rate, _ = send_and_wait(convos, messages, None, f"b{linger_ms}-{r}-{uuid.uuid4().hex[:4]}")
            _, lat = send_and_wait(convos, paced, 2000, f"l{linger_ms}-{r}-{uuid.uuid4().hex[:4]}")
            rates.append(rate)
            p50s.append(pct(lat, 0.50))
            p99s.append(pct(lat, 0.99))
        return statistics.median(rates), statistics.median(p50s), statistics.median(p99s)
    finally:
        p.stop(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=1000000)
    ap.add_argument("--replay-events", type=int, default=100000)
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--paced", type=int, default=6000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lingers", default="0,2,5")
    ap.add_argument("--skip-restore", action="store_true")
    ap.add_argument("--skip-commit", action="store_true")
    args = ap.parse_args()
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), "down"], stdout=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", str(STATE)])
    stack("up")
    try:
        if not args.skip_restore:
            r = bench_restore(args.conversations, args.replay_events)
            h = r["health"]
            print("## Restore\n")
            print("| conversations | state records read | events replayed | partitions | "
                  "restore time | /health during it |")
            print("|---|---|---|---|---|---|")
            print(f"| {args.conversations} | {r['records']} | {r['events_replayed']} | "
                  f"{r['partitions']} | {r['restore_ms'] / 1000:.2f} s | {h['ok']} answers of "
                  f"200 and {h['other']} other after the first 200, slowest "
                  f"{h['slowest_ms']:.0f} ms |\n", flush=True)
        if args.skip_commit:
            return
        cmds = Commands(BROKERS)
        convos = [f"bc-{uuid.uuid4().hex[:10]}" for _ in range(100)]
        for c in convos:
            cmds.send(command(c, "u1", "CreateConversation", {"title": "b", "members": ["u2"]},
                              origin="api:0"))
        cmds.flush()
        print("## Linger\n")
        print(f"Burst: {args.messages} messages over {len(convos)} conversations sent as fast "
              f"as one Python client can; paced: {args.paced} messages at 2000/s. Median of "
              f"{args.reps} runs.\n")
        print("| linger-ms | burst: messages/s end to end | at 2000 msg/s: send->readable p50 | p99 |")
        print("|---|---|---|---|")
        for linger in [int(x) for x in args.lingers.split(",")]:
            rate, p50, p99 = bench_commit(linger, args.messages, args.paced, convos, args.reps)
            print(f"| {linger} | {rate:.0f} | {p50 * 1000:.1f} ms | {p99 * 1000:.1f} ms |",
                  flush=True)
    finally:
        subprocess.run([str(ROOT / "scripts" / "stack.sh"), "down"], stdout=subprocess.DEVNULL)
        subprocess.run([str(ROOT / "scripts" / "pg.sh"), "destroy"], stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
