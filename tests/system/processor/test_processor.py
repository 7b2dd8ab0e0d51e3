"""The processor against the real broker: commands in, the ordered, deduplicated event log out,
read back with independent clients."""
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from kchat_testkit.daemon import start as start_daemon
from kchat_testkit.http import free_port, wait_until
from kchat_testkit.metrics import metric
from kchat_testkit.stack import DAEMONS, ROOT
from kchat_testkit.wire import (Commands, body, command, decode, encode, events_of, read_deliveries,
                                read_topic, send_message)

STACK = [str(ROOT / "scripts" / "stack.sh")]
PROCESSOR = DAEMONS["processor"]["binary"]
ADMIN = f"http://127.0.0.1:{os.environ.get('KCHAT_PROCESSOR_ADMIN_PORT')}"


def new_convo(commands, brokers, members=("u2", "u3"), creator="u1"):
    convo = f"c-{uuid.uuid4().hex[:12]}"
    commands.send(command(convo, creator, "CreateConversation",
                          {"title": "test", "members": list(members)}, origin="api:0"))
    commands.flush()
    evs = events_of(brokers, convo, lambda got: len(got) >= 1)
    assert body(evs[0]) == ("ConversationCreated",
                            {"title": "test", "members": [creator, *members]})
    return convo


def messages(evs):
    return [body(e)[1] | {"actor": e["actor_id"]} for e in evs if body(e)[0] == "MessageCreated"]


def assert_gap_free(msgs):
    seqs = [m["seq_no"] for m in msgs]
    assert seqs == list(range(1, len(seqs) + 1)), "seq_no must be 1, 2, 3, ... with no gap"


def test_three_concurrent_senders(commands, brokers):
    convo = new_convo(commands, brokers)
    per_sender = 300

    def sender(user):
        c = Commands(brokers)
        for i in range(per_sender):
            c.send(send_message(convo, user, f"{user}-{i}", f"message {i} from {user}"))
        c.flush()

    threads = [threading.Thread(target=sender, args=(u,)) for u in ("u1", "u2", "u3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = 1 + 3 * per_sender
    msgs = messages(events_of(brokers, convo, lambda got: len(got) >= want))
    assert len(msgs) == 3 * per_sender
    assert_gap_free(msgs)
    ids = [m["client_msg_id"] for m in msgs]
    assert len(set(ids)) == len(ids)
    for m in msgs:
        assert m["client_msg_id"].startswith(m["actor"] + "-")
        assert m["server_msg_id"] == f"{convo}:{m['seq_no']}"
    # Each sender's own messages keep their order.
    for u in ("u1", "u2", "u3"):
        mine = [int(m["client_msg_id"].split("-")[1]) for m in msgs if m["actor"] == u]
        assert mine == sorted(mine)


def acks_for(brokers, convo, n, slot=0):
    got = read_deliveries(brokers, lambda it: it["convo_id"] == convo and it["ack"],
                          lambda g: len(g) >= n, partitions=[slot])
    return [it["ack"][1] if isinstance(it["ack"], tuple) else it["ack"] for _, it in got]


def test_a_retry_gets_the_same_ids_and_creates_nothing(commands, brokers):
    convo = new_convo(commands, brokers)
    for _ in range(3):
        commands.send(send_message(convo, "u2", "retry-1", "only once"))
    commands.send(send_message(convo, "u2", "after", "next"))
    commands.flush()
    msgs = messages(events_of(brokers, convo, lambda got: len(got) >= 3))
    assert [m["client_msg_id"] for m in msgs] == ["retry-1", "after"]
    assert_gap_free(msgs)
    acks = acks_for(brokers, convo, 4)
    statuses = [(a["client_msg_id"], a["status"], a["seq_no"], a["server_msg_id"]) for a in acks]
    first = ("retry-1", "ok", 1, f"{convo}:1")
    dup = ("retry-1", "duplicate", 1, f"{convo}:1")
    assert statuses == [first, dup, dup, ("after", "ok", 2, f"{convo}:2")]


def test_a_retry_after_a_restart_is_still_recognised(commands, brokers):
    convo = new_convo(commands, brokers)
    commands.send(send_message(convo, "u1", "before-restart"))
    commands.flush()
    assert len(messages(events_of(brokers, convo, lambda got: len(got) >= 2))) == 1
    subprocess.run(STACK + ["restart", "processor"], check=True, capture_output=True)
    commands.send(send_message(convo, "u1", "before-restart"))
    commands.send(send_message(convo, "u1", "after-restart"))
    commands.flush()
    msgs = messages(events_of(brokers, convo, lambda got: len(got) >= 3))
    assert [(m["client_msg_id"], m["seq_no"]) for m in msgs] == [("before-restart", 1),
                                                                  ("after-restart", 2)]
    acks = acks_for(brokers, convo, 3)
    assert [(a["status"], a["seq_no"]) for a in acks] == [("ok", 1), ("duplicate", 1), ("ok", 2)]


def test_rules_reject_with_a_reason(commands, brokers):
    convo = new_convo(commands, brokers)
    commands.send(send_message(convo, "stranger", "x-1"))                     # not a member
    commands.send(send_message(f"nope-{uuid.uuid4().hex}", "u1", "x-2"))        # no conversation
    commands.send(send_message(convo, "u1", "x-3", "a" * 20000))               # too large
    commands.send(send_message(convo, "u1", "", "empty id"))                   # invalid id
    commands.send(command(convo, "u1", "CreateConversation", {"title": "again", "members": []}))
    # Invalid UTF-8 in a string: written by hand, since fastavro only writes valid text.
    raw = encode("chat.commands-value", send_message(convo, "u1", "x-5", "XXXX"))
    commands.send_raw(convo.encode(), raw.replace(b"\x08XXXX", b"\x08\xff\xfe\xc0\xaf"))
    commands.send(command(convo, "u1", "SetReadMarker", {"seq_no": 5}))          # no such message
    commands.send(send_message(convo, "u1", "ok-1", "fine"))
    commands.flush()
    evs = events_of(brokers, convo, lambda got: len(got) >= 8)
    got = [(body(e)[0], body(e)[1].get("reason")) for e in evs[1:]]
    assert got == [("CommandRejected", "not_member"), ("CommandRejected", "too_large"),
                   ("CommandRejected", "invalid"), ("CommandRejected", "conversation_exists"),
                   ("CommandRejected", "invalid"), ("CommandRejected", "no_such_message"),
                   ("MessageCreated", None)]
    assert body(evs[-1])[1]["seq_no"] == 1
    rejected = body(evs[1])[1]
    assert rejected["client_msg_id"] == "x-1" and rejected["command_type"] == "SendMessage"


def test_membership_changes(commands, brokers):
    convo = new_convo(commands, brokers, members=("u2",))
    commands.send(command(convo, "u1", "AddMembers", {"members": ["u3", "u2"]}))
    commands.send(send_message(convo, "u3", "from-u3"))
    commands.send(command(convo, "u3", "RemoveMembers", {"members": ["u3"]}))
    commands.send(send_message(convo, "u3", "too-late"))
    commands.flush()
    evs = events_of(brokers, convo, lambda got: len(got) >= 5)
    assert [body(e) for e in evs[1:4]] == [
        ("MembersAdded", {"members": ["u3"]}),
        ("MessageCreated", {"seq_no": 1, "server_msg_id": f"{convo}:1",
                            "client_msg_id": "from-u3", "content": "hello",
                            "content_type": "text/plain", "reply_to": None,
                            "attachments": []}),
        ("MembersRemoved", {"members": ["u3"], "seq_no": 1, "promoted": None})]
    assert body(evs[4])[1]["reason"] == "not_member"


def test_poison_records_are_dead_lettered_and_the_rest_flows(commands, brokers):
    convo = new_convo(commands, brokers)
    key = convo.encode()
    poison = [b"not avro at all", b"\x01\x00\x00\x00\x01abc", b"\x00\x00\x00\x03\xe7\x02",
              encode("chat.events-value", {"event_id": "e", "convo_id": convo, "actor_id": "u1",
                                           "occurred_at": 0, "command_id": "c",
                                           "origin": "x", "body": ("io.kchat.MessageDeleted",
                                                                   {"seq_no": 1})})]
    for p in poison:
        commands.send_raw(key, p)
    commands.send(send_message(convo, "u1", "after-poison"))
    commands.flush()
    msgs = messages(events_of(brokers, convo, lambda got: len(got) >= 2))
    assert [m["client_msg_id"] for m in msgs] == ["after-poison"]
    c = Consumer({"bootstrap.servers": brokers, "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("chat.commands.dlq", 0, 0)])
    found = []
    for _ in range(300):
        m = c.poll(0.2)
        if m is not None and not m.error() and m.key() == key:
            found.append((m.value(), dict(m.headers() or [])))
        if len(found) == len(poison):
            break
    c.close()
    assert [v for v, _ in found] == poison, "each poison record is kept whole"
    reasons = [h["kchat-error"].decode() for _, h in found]
    assert "magic byte" in reasons[1]
    assert "unknown schema id" in reasons[2]
    assert "not a command" in reasons[3]
    assert all(h["kchat-source"].decode().startswith("chat.commands/") for _, h in found)



def load(brokers, convos, per_convo, tag, rate_per_s=10000):
    """Sends per_convo messages to each conversation, spread over the senders, at about
    rate_per_s; returns the client_msg_ids sent per conversation."""
    c = Commands(brokers)
    sent = {cv: [] for cv in convos}
    start = time.monotonic()
    n = 0
    for i in range(per_convo):
        for cv in convos:
            user = ("u1", "u2", "u3")[i % 3]
            cmid = f"{tag}-{i}"
            c.send(send_message(cv, user, cmid, f"load {i}"))
            sent[cv].append(cmid)
            n += 1
            if n % 1000 == 0:
                c.p.poll(0)
                ahead = n / rate_per_s - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    c.flush()
    return sent


def check_all_once(brokers, sent):
    total = sum(len(v) for v in sent.values())
    keys = {cv.encode() for cv in sent}
    counted = {"upto": 0, "messages": 0}

    def enough(g):  # counts only what arrived since the last call: 50k events, read once
        for _, v in g[counted["upto"]:]:
            counted["messages"] += body(v)[0] == "MessageCreated"
        counted["upto"] = len(g)
        return counted["messages"] >= total

    got = read_topic(brokers, "chat.events", lambda k, v, m: k in keys, enough, timeout=180)
    per = {cv: [] for cv in sent}
    for _, v in got:
        if body(v)[0] == "MessageCreated":
            per[v["convo_id"]].append(body(v)[1])
    for cv, ids in sent.items():
        msgs = per[cv]
        assert sorted(m["client_msg_id"] for m in msgs) == sorted(ids), \
            f"{cv}: every accepted message exactly once"
        assert_gap_free(msgs)


def test_kill_9_under_load_loses_and_duplicates_nothing(commands, brokers):
    convos = [new_convo(commands, brokers) for _ in range(20)]
    result = {}
    loader = threading.Thread(target=lambda: result.update(
        load(brokers, convos, 2500, "k9", rate_per_s=12000)))
    loader.start()
    time.sleep(1.5)
    subprocess.run(STACK + ["kill", "processor"], check=True, capture_output=True)
    loader.join()
    assert sum(len(v) for v in result.values()) == 50000
    check_all_once(brokers, result)


def test_a_rebalance_mid_load_loses_and_duplicates_nothing(commands, brokers, tmp_path):
    convos = [new_convo(commands, brokers) for _ in range(12)]
    result = {}
    loader = threading.Thread(target=lambda: result.update(
        load(brokers, convos, 1500, "rb", rate_per_s=2000)))
    loader.start()
    port = free_port()
    second = start_daemon(PROCESSOR, [f"--admin-port={port}", "--instance-id=rebalance-test",
                                      f"--schemas-dir={ROOT / 'schemas'}"],
                          f"http://127.0.0.1:{port}", "second processor healthy",
                          tmp_path / "second.log")
    try:
        def took_partitions():
            for line in (tmp_path / "second.log").read_text().splitlines():
                entry = json.loads(line)
                if entry["msg"] == "partitions assigned" and entry["partitions"] > 0:
                    return True
            return False

        wait_until(took_partitions, "the second instance to take a share of the partitions")
        assert second.stop(timeout=60) == 0
    finally:
        second.stop(signal.SIGKILL)
    loader.join()
    check_all_once(brokers, result)


def redis_cli(*args):
    port = os.environ["KCHAT_REDIS_PORT"]
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", port, *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_events_fan_out_to_the_slots_of_their_recipients(commands, brokers):
    convo = new_convo(commands, brokers, members=("u2", "u3"))
    now = int(time.time() * 1000)
    # The presence registry as gateways keep it: user -> {slot: registered-until ms}.
    for user, slot, until in (("u1", 0, now + 60000), ("u1", 2, now + 60000),
                              ("u2", 3, now + 60000), ("u3", 5, now + 60000),
                              ("u3", 6, now - 1000)):  # lapsed: a crashed gateway's
        redis_cli("HSET", f"kchat:route:{user}", str(slot), str(until))
    try:
        commands.send(send_message(convo, "u1", "fan-1", "to everyone", origin="gateway:0"))
        commands.send(command(convo, "u1", "RemoveMembers", {"members": ["u3"]},
                              origin="gateway:0"))
        commands.flush()
        expected = {  # (slot, event) -> recipients
            (0, "MessageCreated"): ["u1"],     # the ack, with the event, to the sender's gateway
            (2, "MessageCreated"): ["u1"],     # the sender's other device
            (3, "MessageCreated"): ["u2"],
            (5, "MessageCreated"): ["u3"],
            (0, "MembersRemoved"): ["u1"],
            (2, "MembersRemoved"): ["u1"],
            (3, "MembersRemoved"): ["u2"],
            (5, "MembersRemoved"): ["u3"],     # the removed member hears of it
        }
        mine = lambda it: it["convo_id"] == convo  # noqa: E731
        got = read_deliveries(brokers, mine, lambda g: len(g) >= len(expected))
        # Everything the slots hold for the conversation, read to the end: nothing more.
        settle = read_deliveries(brokers, mine, None, to_end=True)
        seen = {}
        for part, it in settle:
            name = body(decode(it["event"]))[0] if it["event"] else None
            seen.setdefault((part, name), []).extend(it["recipients"])
            if name == "MessageCreated":  # where the sender is, for the delivery receipts
                assert sorted(it["actor_slots"]) == [0, 2]
        assert len(got) >= len(expected)
        assert seen == expected
    finally:
        redis_cli("DEL", "kchat:route:u1", "kchat:route:u2", "kchat:route:u3")


def test_a_slot_gets_the_events_of_a_conversation_in_seq_order_acks_included(commands, brokers):
    """Two members on the same gateway slot send in turn, in one burst: the slot's records
    (each sender's acks and the fan-out to the other) carry seq_no strictly increasing,
    so a sender's other device never sees seq n+1 (from its own ack) before seq n."""
    convo = new_convo(commands, brokers, members=("u2",))
    now = int(time.time() * 1000)
    for user in ("u1", "u2"):
        redis_cli("HSET", f"kchat:route:{user}", "1", str(now + 60000))
    try:
        n = 200
        for i in range(n):
            sender = ("u1", "u2")[i % 2]
            commands.send(send_message(convo, sender, f"ord-{i}", f"m{i}", origin="gateway:1"))
        commands.flush()
        got = read_deliveries(brokers, lambda it: it["convo_id"] == convo and it["event"],
                              lambda g: len(g) >= n, partitions=[1])
        seqs = [body(decode(it["event"]))[1].get("seq_no") for _, it in got]
        # Every message reaches the slot once, in one delivery naming both members (the ack
        # for its sender's connection, the event for the other member), never after a later
        # one.
        assert seqs == list(range(1, n + 1)), "a later seq_no came first"
        for _, it in got:
            assert sorted(it["recipients"]) == ["u1", "u2"]
            assert it["ack"] is not None
    finally:
        redis_cli("DEL", "kchat:route:u1", "kchat:route:u2")


def test_authors_edit_and_delete_also_after_a_restart(commands, brokers):
    convo = new_convo(commands, brokers, members=("u2",))
    commands.send(send_message(convo, "u1", "e-1", "first"))
    commands.send(send_message(convo, "u1", "e-2", "second"))
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 1, "content": "first, edited"}))
    commands.send(command(convo, "u2", "EditMessage", {"seq_no": 1, "content": "not mine"}))
    commands.flush()
    assert len(events_of(brokers, convo, lambda got: len(got) >= 5)) == 5
    # The author is in the state changelog: a restarted processor still knows it.
    subprocess.run(STACK + ["restart", "processor"], check=True, capture_output=True)
    commands.send(command(convo, "u1", "DeleteMessage", {"seq_no": 2}))
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 2, "content": "too late"}))
    commands.flush()
    evs = events_of(brokers, convo, lambda got: len(got) >= 7)
    assert [body(e) if body(e)[0] != "CommandRejected" else (body(e)[0], body(e)[1]["reason"])
            for e in evs[3:]] == [
        ("MessageEdited", {"seq_no": 1, "content": "first, edited"}),
        ("CommandRejected", "not_author"),
        ("MessageDeleted", {"seq_no": 2}),
        ("CommandRejected", "deleted")]


@pytest.mark.parametrize("producers", [1, 3])
def test_a_zombie_is_fenced_and_its_successor_loses_nothing(brokers, tmp_path, producers):
    """Two processors with one instance id: the second fences the first (its transactions
    fail for good and it exits 1); what the first had open is aborted, and the second
    restores the committed state and rewinds, so nothing is lost or numbered twice. Runs on
    topics of its own, so the stack's processor is not involved. With one transactional
    producer and with three taking turns (the default is two): every one is fenced."""
    from confluent_kafka.admin import AdminClient, NewTopic
    tag = uuid.uuid4().hex[:6]
    names = {k: f"fence-{tag}.{k}" for k in ("commands", "events", "deliveries", "state", "dlq")}
    admin = AdminClient({"bootstrap.servers": brokers})
    new = [NewTopic(names["commands"], 12, 1), NewTopic(names["events"], 12, 1),
           NewTopic(names["deliveries"], 8, 1), NewTopic(names["dlq"], 1, 1),
           NewTopic(names["state"], 12, 1, config={"cleanup.policy": "compact"})]
    for fut in admin.create_topics(new).values():
        fut.result()
    # Created is not yet known to every metadata request: the processor would refuse to
    # start on an unknown topic.
    def known(t, n):
        md = admin.list_topics(t, timeout=5).topics.get(t)
        return md is not None and md.error is None and len(md.partitions) == n

    wait_until(lambda: all(known(nt.topic, nt.num_partitions) for nt in new), "topics created")

    def start(n):
        port = free_port()
        return start_daemon(
            PROCESSOR,
            [f"--admin-port={port}", f"--instance-id=fence-{tag}", f"--group-id=fence-{tag}",
             f"--schemas-dir={ROOT / 'schemas'}", f"--commands-topic={names['commands']}",
             f"--events-topic={names['events']}", f"--deliveries-topic={names['deliveries']}",
             f"--state-topic={names['state']}", f"--dlq-topic={names['dlq']}",
             f"--producers={producers}"],
            f"http://127.0.0.1:{port}", f"processor {n} healthy", tmp_path / f"p{n}.log")

    cmds = Commands(brokers)
    topic = names["commands"]

    def send(cmd):
        cmds.send_raw(cmd["convo_id"].encode(), encode("chat.commands-value", cmd), topic)

    # Conversations on every partition, so the first instance still owns some after the
    # second joins, and learns it is fenced on its next transaction.
    convos = [f"c-{uuid.uuid4().hex[:10]}" for _ in range(36)]
    first = start(1)
    second = None
    try:
        for cv in convos:
            send(command(cv, "u1", "CreateConversation", {"title": "f", "members": ["u2"]}))
        for i in range(20):
            for cv in convos:
                send(send_message(cv, "u1", f"a-{i}"))
        cmds.flush()
        second = start(2)  # same instance id: fences the first
        for i in range(20):
            for cv in convos:
                send(send_message(cv, "u2", f"b-{i}"))
        cmds.flush()
        assert first.wait(timeout=90) == 1, "the fenced instance gives up"
        keys = {cv.encode() for cv in convos}
        want = len(convos) * 41
        got = read_topic(brokers, names["events"], lambda k, v, m: k in keys,
                         lambda g: len(g) >= want)
        per = {cv: [] for cv in convos}
        for _, v in got:
            per[v["convo_id"]].append(v)
        for cv, evs in per.items():
            msgs = messages(evs)
            assert sorted(m["client_msg_id"] for m in msgs) == sorted(
                [f"a-{i}" for i in range(20)] + [f"b-{i}" for i in range(20)]), cv
            assert_gap_free(msgs)
        text = (tmp_path / "p1.log").read_text()
        assert "giving up" in text
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=60)
        for fut in admin.delete_topics(list(names.values())).values():
            fut.result()


def restart_processor(**settings):
    env = dict(os.environ, **{f"KCHAT_{k.upper()}": str(v) for k, v in settings.items()})
    subprocess.run(STACK + ["restart", "processor"], check=True, capture_output=True, env=env)


def restore_log(since):
    """The processor's "state restored" log lines written after byte offset `since`."""
    path = os.path.join(os.environ["KCHAT_STATE_DIR"], "logs", "processor.log")
    with open(path, "rb") as f:
        f.seek(since)
        return [json.loads(line) for line in f.read().decode().splitlines()
                if line.startswith("{") and '"state restored"' in line]


def test_dedupe_entries_and_numbering_survive_kill_9_from_checkpoint_and_replay(commands,
                                                                                 brokers):
    """The state is checkpointed now and then, not with every message: after kill -9, a
    restore reads the last checkpoint (its dedupe entries folded into blocks) and replays the
    events written since. Retries of messages from before and after the checkpoint are
    recognised with their first seq_no, and numbering goes on without a gap."""
    log = os.path.join(os.environ["KCHAT_STATE_DIR"], "logs", "processor.log")
    # A checkpoint once 40 events of a partition are written, never by time: the first 50
    # messages are checkpointed (most of them), the next 20 are not.
    restart_processor(checkpoint_interval_ms=3600000, checkpoint_events=40)
    try:
        convo = new_convo(commands, brokers, members=("u2",))
        before = metric(ADMIN, "kchat_processor_checkpoints_total")
        for i in range(50):
            commands.send(send_message(convo, ("u1", "u2")[i % 2], f"a-{i}", f"a{i}"))
        commands.flush()
        assert len(messages(events_of(brokers, convo, lambda g: len(g) >= 51))) == 50
        wait_until(lambda: metric(ADMIN, "kchat_processor_checkpoints_total") > before,
                   "a checkpoint of the conversation's partition")
        for i in range(20):
            commands.send(send_message(convo, "u1", f"b-{i}", f"b{i}"))
        commands.flush()
        assert len(messages(events_of(brokers, convo, lambda g: len(g) >= 71))) == 70
        since = os.path.getsize(log)
        subprocess.run(STACK + ["kill", "processor"], check=True, capture_output=True)
        restored = wait_until(lambda: restore_log(since), "the restore after kill -9")
        assert sum(r["events_replayed"] for r in restored) >= 20, restored
        # Every retry is a duplicate with its first seq_no; the next message is number 71.
        for i in range(50):
            commands.send(send_message(convo, ("u1", "u2")[i % 2], f"a-{i}", "again"))
        for i in range(20):
            commands.send(send_message(convo, "u1", f"b-{i}", "again"))
        commands.send(send_message(convo, "u2", "c-0", "new"))
        commands.flush()
        msgs = messages(events_of(brokers, convo, lambda g: len(g) >= 72))
        assert [m["client_msg_id"] for m in msgs] == (
            [f"a-{i}" for i in range(50)] + [f"b-{i}" for i in range(20)] + ["c-0"])
        assert_gap_free(msgs)
        acks = acks_for(brokers, convo, 141)
        first = {a["client_msg_id"]: a["seq_no"] for a in acks[:70]}
        retried = acks[70:140]
        assert [a["status"] for a in retried] == ["duplicate"] * 70
        assert all(a["seq_no"] == first[a["client_msg_id"]] for a in retried)
        assert (acks[140]["status"], acks[140]["seq_no"]) == ("ok", 71)
    finally:
        restart_processor()


def test_roles_survive_kill_9_from_checkpoint_and_replay(commands, brokers):
    """Roles are in the checkpoint (ConvoState version 4) and in the events since: after
    kill -9 the restored processor decides by the same roles."""
    log = os.path.join(os.environ["KCHAT_STATE_DIR"], "logs", "processor.log")
    restart_processor(checkpoint_interval_ms=3600000, checkpoint_events=10)
    try:
        convo = new_convo(commands, brokers, members=("u2", "u3", "u4"))
        before = metric(ADMIN, "kchat_processor_checkpoints_total")
        commands.send(command(convo, "u1", "SetRole", {"user_id": "u2", "role": "admin"}))
        commands.send(command(convo, "u1", "SetRole", {"user_id": "u3", "role": "owner"}))
        for i in range(12):
            commands.send(send_message(convo, "u1", f"r-{i}", f"r{i}"))
        commands.flush()
        assert len(events_of(brokers, convo, lambda g: len(g) >= 15)) == 15
        wait_until(lambda: metric(ADMIN, "kchat_processor_checkpoints_total") > before,
                   "a checkpoint of the conversation's partition")
        # after the checkpoint: only in the events a restore replays
        commands.send(command(convo, "u1", "SetRole", {"user_id": "u4", "role": "admin"}))
        commands.send(command(convo, "u1", "RemoveMembers", {"members": ["u1"]}))
        commands.flush()
        evs = events_of(brokers, convo, lambda g: len(g) >= 17)
        assert body(evs[16]) == ("MembersRemoved", {"members": ["u1"], "seq_no": 12,
                                                     "promoted": None})
        since = os.path.getsize(log)
        subprocess.run(STACK + ["kill", "processor"], check=True, capture_output=True)
        wait_until(lambda: restore_log(since), "the restore after kill -9")
        asks = [("u2", "UpdateConversation", {"title": "by the admin", "topic": None}),
                ("u4", "UpdateConversation", {"title": None, "topic": "by the new admin"}),
                ("u4", "SetRole", {"user_id": "u3", "role": "member"}),
                ("u3", "SetRole", {"user_id": "u3", "role": "member"}),
                ("u1", "UpdateConversation", {"title": "gone", "topic": None}),
                ("u3", "SetRole", {"user_id": "u2", "role": "owner"})]
        for who, kind, fields in asks:
            commands.send(command(convo, who, kind, fields))
        commands.flush()
        got = [body(e) for e in events_of(brokers, convo, lambda g: len(g) >= 23)[17:]]
        assert [(k, f.get("reason")) for k, f in got] == [
            ("ConversationUpdated", None), ("ConversationUpdated", None),
            ("CommandRejected", "not_allowed"), ("CommandRejected", "last_owner"),
            ("CommandRejected", "not_member"), ("RoleChanged", None)]
    finally:
        restart_processor()


def test_reactions_survive_kill_9_from_checkpoint_and_replay(commands, brokers):
    """Reactions are in the checkpoint (DedupeItem version 5) and in the events since: after
    kill -9 the restored processor knows each member's reaction (the next change names it as
    `previous`) and counts them as before."""
    thumbs, heart, party = "\U0001F44D", "\u2764\ufe0f", "\U0001F389"
    log = os.path.join(os.environ["KCHAT_STATE_DIR"], "logs", "processor.log")
    restart_processor(checkpoint_interval_ms=3600000, checkpoint_events=10)

    def react(who, seq, emoji):
        commands.send(command(convo, who, "SetReaction", {"seq_no": seq, "emoji": emoji}))

    try:
        convo = new_convo(commands, brokers, members=("u2", "u3", "u4"))
        before = metric(ADMIN, "kchat_processor_checkpoints_total")
        for i in range(12):
            commands.send(send_message(convo, "u1", f"x-{i}", f"x{i}"))
        react("u2", 1, thumbs)
        react("u3", 1, heart)
        commands.flush()
        assert len(events_of(brokers, convo, lambda g: len(g) >= 15)) == 15
        wait_until(lambda: metric(ADMIN, "kchat_processor_checkpoints_total") > before,
                   "a checkpoint of the conversation's partition")
        # after the checkpoint: only in the events a restore replays
        react("u4", 1, thumbs)
        react("u2", 1, None)
        commands.flush()
        evs = events_of(brokers, convo, lambda g: len(g) >= 17)
        assert body(evs[16]) == ("ReactionChanged", {
            "seq_no": 1, "emoji": None, "previous": thumbs,
            "counts": [{"emoji": heart, "count": 1}, {"emoji": thumbs, "count": 1}]})
        since = os.path.getsize(log)
        subprocess.run(STACK + ["kill", "processor"], check=True, capture_output=True)
        wait_until(lambda: restore_log(since), "the restore after kill -9")
        react("u3", 1, heart)   # from the checkpoint: the same again
        react("u2", 1, party)   # removed after it: no previous
        react("u4", 1, heart)   # added after it: replaced
        commands.flush()
        got = [body(e)[1] for e in events_of(brokers, convo, lambda g: len(g) >= 20)[17:]]
        assert [(g["emoji"], g["previous"]) for g in got] == [
            (heart, heart), (party, None), (heart, thumbs)]
        assert got[-1]["counts"] == [{"emoji": heart, "count": 2}, {"emoji": party, "count": 1}]
    finally:
        restart_processor()


def set_topic_config(brokers, topic, name, value):
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource)
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    admin = AdminClient({"bootstrap.servers": brokers})
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result()


def test_aborted_transactions_take_the_batch_behind_along(commands, brokers):
    """Group commit: while a transaction is written and committed, the next batch is read and
    applied. When the broker refuses the transaction's records (here: chat.events accepts no
    record larger than 100 bytes for a while, so every transaction aborts), the batch behind
    it goes too: the state is restored from what did commit and the input rewound, again and
    again, and once the broker accepts the records nothing is lost, numbered twice or out of
    order, and the processor never stopped."""
    convos = [new_convo(commands, brokers) for _ in range(12)]
    pid = int(open(os.path.join(os.environ["KCHAT_STATE_DIR"], "run", "processor.pid")).read())
    aborted = metric(ADMIN, "kchat_processor_transactions_total", 'outcome="aborted"')
    result = {}
    loader = threading.Thread(target=lambda: result.update(
        load(brokers, convos, 600, "ab", rate_per_s=1500)))
    loader.start()
    try:
        time.sleep(1)
        set_topic_config(brokers, "chat.events", "max.message.bytes", "100")
        wait_until(lambda: metric(ADMIN, "kchat_processor_transactions_total",
                                  'outcome="aborted"') >=
                   aborted + 3, "transactions aborted by the broker")
    finally:
        set_topic_config(brokers, "chat.events", "max.message.bytes", "1048576")
    loader.join()
    check_all_once(brokers, result)
    os.kill(pid, 0)  # the same process: an abort is recovered from, not fatal
