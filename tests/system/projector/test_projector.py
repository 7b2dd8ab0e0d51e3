"""The projector against the real stack: commands in (turned into events by the processor),
the Postgres and Redis read models out, read back with independent clients (psycopg, redis,
and a model computed in Python from chat.events with fastavro)."""
import datetime
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
import redis as redislib
from confluent_kafka import Consumer, TopicPartition

from kchat_testkit.daemon import Daemon
from kchat_testkit.http import WaitTimeout, http_get, wait_until
from kchat_testkit.metrics import metric, sample, scrape
from kchat_testkit.stack import BUILD, DAEMONS, ROOT
from kchat_testkit.wire import (NEWEST, Commands, body, command, decode, encode, java_partition,
                                send_message)

STACK = [str(ROOT / "scripts" / "stack.sh")]
TOPIC = "chat.events"
RECENT = 100  # the projector's --recent-messages default
ADMIN = f"http://127.0.0.1:{os.environ.get('KCHAT_PROJECTOR_ADMIN_PORT')}"


@pytest.fixture(scope="module")
def r(redis_port):
    return redislib.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)


def pg():
    return psycopg.connect(os.environ["KCHAT_PG_DSN"], autocommit=True)


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---- the topic's end, and the models having reached it ----

def topic_ends(brokers):
    c = Consumer({"bootstrap.servers": brokers, "group.id": new_id("ends"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    try:
        parts = list(c.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                for p in parts}
    finally:
        c.close()


def stored_offsets(r):
    with pg() as conn:
        rows = conn.execute("SELECT partition, next_offset FROM rm.offsets WHERE topic = %s",
                            (TOPIC,)).fetchall()
    pgo = {p: o for p, o in rows}
    gen = r.get("kchat:rm:gen")
    ro = {int(k): int(v) for k, v in r.hgetall(f"kchat:rm:{gen}:offsets").items()} if gen else {}
    return pgo, ro


def wait_caught_up(brokers, r, timeout=180):
    """Both models have applied every partition of chat.events up to its end (the projector
    moves its stored offsets past the transaction markers at the end)."""
    def done():
        ends = topic_ends(brokers)
        pgo, ro = stored_offsets(r)
        return all(pgo.get(p, 0) == e and ro.get(p, 0) == e for p, e in ends.items())
    wait_until(done, "the projector to apply chat.events up to its end", timeout=timeout,
               interval=0.5)


# ---- an independent model of what the read models must hold ----

def iso(ms):
    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def epoch_ms(t):
    """fastavro reads timestamp-millis as an aware datetime."""
    if isinstance(t, datetime.datetime):
        delta = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return delta // datetime.timedelta(milliseconds=1)
    return t


def read_all_events(brokers):
    """Every event of chat.events (read_committed) up to its current end, in order per
    partition; undecodable records are skipped as the projector skips them."""
    ends = topic_ends(brokers)
    c = Consumer({"bootstrap.servers": brokers, "group.id": new_id("model"),
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(TOPIC, p, 0) for p in ends])
    pending = {p for p, e in ends.items() if e > 0}
    out = {p: [] for p in ends}
    deadline = time.monotonic() + 120
    try:
        while pending and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.partition() in pending and m.offset() >= ends[m.partition()]:
                    pending.discard(m.partition())
                continue
            if m.offset() < ends[m.partition()]:
                try:
                    out[m.partition()].append(decode(m.value()))
                except Exception:  # poison: written on purpose by a test
                    pass
            if m.offset() + 1 >= ends[m.partition()]:
                pending.discard(m.partition())
    finally:
        c.close()
    assert not pending, "could not read chat.events to its end"
    return [e for p in sorted(out) for e in out[p]]


def expected_models(events):
    """(postgres, redis) dumps computed from the events alone, in the shapes of pg_dump()
    and redis_dump()."""
    convs, members, msgs, seen, departures, topics = {}, {}, {}, {}, {}, {}
    reactions = {}  # (convo, seq_no, user): emoji
    shown = {}  # (convo, seq_no): (the latest counts, {user: emoji}) of a message's JSON
    for ev in events:
        kind, f = body(ev)
        if kind == "CommandRejected":
            continue
        c, actor, at = ev["convo_id"], ev["actor_id"], epoch_ms(ev["occurred_at"])
        if kind == "ConversationCreated":
            convs[c] = {"title": f["title"], "topic": "", "created_by": actor, "created_at": at,
                        "last_seq": 0, "last_activity": at}
        if kind in ("ConversationCreated", "MembersAdded"):
            for u in f["members"]:
                role = "owner" if kind == "ConversationCreated" and u == actor else "member"
                members.setdefault((c, u), {"joined_at": at, "read_seq": 0, "role": role})
                if kind == "MembersAdded":
                    departures.pop((c, u), None)
        elif kind == "MembersRemoved":
            for u in f["members"]:
                members.pop((c, u), None)
                departures[(c, u)] = {"left_seq": f.get("seq_no", 0), "left_at": at}
            if f.get("promoted") and (c, f["promoted"]) in members:
                members[(c, f["promoted"])]["role"] = "owner"
        elif kind == "RoleChanged":
            if (c, f["user_id"]) in members:
                members[(c, f["user_id"])]["role"] = f["role"]
        elif kind == "ConversationUpdated":
            if f.get("title") is not None:
                convs[c]["title"] = f["title"]
            if f.get("topic") is not None:
                convs[c]["topic"] = f["topic"]
                topics[c] = f["topic"]
        elif kind == "MessageCreated":
            msgs[(c, f["seq_no"])] = {
                "server_msg_id": f["server_msg_id"], "sender_id": actor,
                "client_msg_id": f["client_msg_id"], "content": f["content"],
                "content_type": f["content_type"], "created_at": at,
                "reply_to": f.get("reply_to"), "edited_at": None,
                "edit_count": 0, "deleted_at": None,
                "attachments": f.get("attachments") or None}
            shown[(c, f["seq_no"])] = ([], {})
            convs[c]["last_seq"] = max(convs[c]["last_seq"], f["seq_no"])
            if (c, actor) in members:
                members[(c, actor)]["read_seq"] = max(members[(c, actor)]["read_seq"],
                                                      f["seq_no"])
        elif kind == "MessageEdited" and (c, f["seq_no"]) in msgs:
            m = msgs[(c, f["seq_no"])]
            m.update(content=f["content"], edited_at=at, edit_count=m["edit_count"] + 1)
        elif kind == "MessageDeleted":
            for k in [k for k in reactions if k[:2] == (c, f["seq_no"])]:
                del reactions[k]
            if (c, f["seq_no"]) in msgs:
                msgs[(c, f["seq_no"])].update(content="", deleted_at=at)
                shown[(c, f["seq_no"])] = ([], {})
        elif kind == "ReactionChanged":
            if f["emoji"] is None:
                reactions.pop((c, f["seq_no"], actor), None)
            else:
                reactions[(c, f["seq_no"], actor)] = f["emoji"]
            if (c, f["seq_no"]) in shown:
                counts, who = shown[(c, f["seq_no"])]
                who = {u: e for u, e in who.items() if u != actor}
                if f["emoji"] is not None:
                    who[actor] = f["emoji"]
                shown[(c, f["seq_no"])] = ([dict(x) for x in f["counts"]], who)
        elif kind == "ReadMarkerSet" and (c, actor) in members:
            members[(c, actor)]["read_seq"] = max(members[(c, actor)]["read_seq"], f["seq_no"])
        if c in convs:
            convs[c]["last_activity"] = max(convs[c]["last_activity"], at)
        seen[actor] = max(seen.get(actor, at), at)
    pg_model = {"conversations": convs, "members": members, "messages": msgs,
                "departures": departures, "reactions": reactions}

    def rest(c, s, reacted=True):
        """The message's JSON in recent:<convo> (reacted: who reacted with what, when
        anyone did), or as last_message (without it)."""
        m = msgs[(c, s)]
        counts, who = shown[(c, s)]
        out = {"convo_id": c, "seq_no": s, "server_msg_id": m["server_msg_id"],
               "sender_id": m["sender_id"], "client_msg_id": m["client_msg_id"],
               "content": m["content"], "content_type": m["content_type"],
               "created_at": iso(m["created_at"]), "reply_to": m["reply_to"],
               "attachments": m["attachments"] or [] if m["deleted_at"] is None else [],
               "edited_at": iso(m["edited_at"]) if m["edited_at"] is not None else None,
               "edit_count": m["edit_count"],
               "deleted_at": iso(m["deleted_at"]) if m["deleted_at"] is not None else None,
               "reactions": counts}
        if reacted and who:
            out["reacted"] = who
        return out

    by_convo = {}
    for (c, s) in msgs:
        by_convo.setdefault(c, []).append(s)
    rd = {"lastseen": {u: str(t) for u, t in seen.items()}}
    for c, v in convs.items():
        h = {"title": v["title"], "created_by": v["created_by"],
             "created_at": str(v["created_at"]), "last_seq": str(v["last_seq"]),
             "last_activity": str(v["last_activity"])}
        if c in topics:
            h["topic"] = topics[c]
        roles = {u: members[(cc, u)]["role"] for (cc, u) in members
                 if cc == c and members[(cc, u)]["role"] != "member"}
        if roles:
            rd[f"roles:{c}"] = roles
        seqs = sorted(by_convo.get(c, []))
        if seqs:
            h["last_message"] = rest(c, seqs[-1], reacted=False)
            rd[f"recent:{c}"] = [(rest(c, s), s) for s in seqs[-RECENT:]]
        rd[f"convo:{c}"] = h
        mem = {u for (cc, u) in members if cc == c}
        if mem:
            rd[f"members:{c}"] = mem
            rd[f"read:{c}"] = {u: str(members[(c, u)]["read_seq"]) for u in mem}
        for u in mem:
            rd.setdefault(f"convos:{u}", []).append((c, v["last_activity"]))
    for k in list(rd):
        if k.startswith("convos:"):
            rd[k] = sorted(rd[k])
    return pg_model, rd


def pg_dump(schema="rm"):
    ms = lambda col: f"(extract(epoch from {col}) * 1000)::bigint"  # noqa: E731
    with pg() as conn:
        convs = {row[0]: {"title": row[1], "created_by": row[2], "created_at": row[3],
                          "last_seq": row[4], "last_activity": row[5], "topic": row[6]}
                 for row in conn.execute(
                     f"SELECT convo_id, title, created_by, {ms('created_at')}, last_seq, "
                     f"{ms('last_activity')}, topic FROM {schema}.conversations")}
        members = {(row[0], row[1]): {"joined_at": row[2], "read_seq": row[3], "role": row[4]}
                   for row in conn.execute(
                       f"SELECT convo_id, user_id, {ms('joined_at')}, read_seq, role "
                       f"FROM {schema}.members")}
        departures = {(row[0], row[1]): {"left_seq": row[2], "left_at": row[3]}
                      for row in conn.execute(
                          f"SELECT convo_id, user_id, left_seq, {ms('left_at')} "
                          f"FROM {schema}.departures")}
        msgs = {(row[0], row[1]): {"server_msg_id": row[2], "sender_id": row[3],
                                   "client_msg_id": row[4], "content": row[5],
                                   "content_type": row[6], "created_at": row[7],
                                   "edited_at": row[8], "deleted_at": row[9],
                                   "edit_count": row[10], "reply_to": row[11],
                                   "attachments": row[12]}
                for row in conn.execute(
                    f"SELECT convo_id, seq_no, server_msg_id, sender_id, client_msg_id, content, "
                    f"content_type, {ms('created_at')}, {ms('edited_at')}, {ms('deleted_at')}, "
                    f"edit_count, reply_to, attachments FROM {schema}.messages")}
        reactions = {(row[0], row[1], row[2]): row[3] for row in conn.execute(
            f"SELECT convo_id, seq_no, user_id, emoji FROM {schema}.reactions")}
    return {"conversations": convs, "members": members, "messages": msgs,
            "departures": departures, "reactions": reactions}


def redis_dump(r):
    """Every key of the current generation but the offsets, parsed."""
    gen = r.get("kchat:rm:gen")
    assert gen, "kchat:rm:gen is set"
    prefix = f"kchat:rm:{gen}:"
    out = {}
    for key in r.scan_iter(match=prefix + "*", count=1000):
        name = key[len(prefix):]
        if name == "offsets":
            continue
        t = r.type(key)
        if t == "hash":
            h = r.hgetall(key)
            if "last_message" in h:
                h["last_message"] = json.loads(h["last_message"])
            out[name] = h
        elif t == "set":
            out[name] = r.smembers(key)
        elif t == "zset":
            z = r.zrange(key, 0, -1, withscores=True)
            if name.startswith("recent:"):
                out[name] = [(json.loads(m), int(s)) for m, s in z]
            else:
                out[name] = sorted((m, int(s)) for m, s in z)
        else:
            out[name] = t
    return out


EVENT_NEWEST = 18  # the schema id of Event version 6 (ReactionChanged is there since version 4)


def counts_of(who):
    """A message's reactions as ReactionChanged.counts has them: the most chosen first, ties
    in the byte order of the emoji."""
    n = {}
    for e in who.values():
        n[e] = n.get(e, 0) + 1
    return [{"emoji": e, "count": k}
            for e, k in sorted(n.items(), key=lambda x: (-x[1], x[0].encode()))]


class Reactions:
    """ReactionChanged events written straight to chat.events (the newest Event), as the
    processor writes them: the counts after each change follow who reacted with what."""

    def __init__(self, commands, convo):
        assert NEWEST["chat.events-value"][0] == EVENT_NEWEST
        self.commands, self.convo, self.who = commands, convo, {}

    def react(self, user, seq_no, emoji, origin="gateway:0", command_id=None):
        who = self.who.setdefault(seq_no, {})
        previous = who.get(user)
        if emoji is None:
            who.pop(user, None)
        else:
            who[user] = emoji
        ev = {"event_id": str(uuid.uuid4()), "convo_id": self.convo, "actor_id": user,
              "occurred_at": int(time.time() * 1000),
              "command_id": command_id or str(uuid.uuid4()), "origin": origin,
              "body": ("io.kchat.ReactionChanged",
                       {"seq_no": seq_no, "emoji": emoji, "previous": previous,
                        "counts": counts_of(who)})}
        data = encode("chat.events-value", ev)
        assert data[1:5] == EVENT_NEWEST.to_bytes(4, "big")
        # keyed by the conversation: its partition, after the events already there
        self.commands.send_raw(self.convo.encode(), data, topic=TOPIC)

    def deleted(self, seq_no):
        self.who.pop(seq_no, None)


def reactions_of(convo):
    with pg() as conn:
        return {(s, u): e for s, u, e in conn.execute(
            "SELECT seq_no, user_id, emoji FROM rm.reactions WHERE convo_id = %s", (convo,))}


def create(commands, convo, creator, members, origin="api:0", command_id=None):
    commands.send(command(convo, creator, "CreateConversation",
                          {"title": f"title of {convo}", "members": list(members)},
                          origin=origin, command_id=command_id))


def messages_of(convo):
    with pg() as conn:
        return conn.execute("SELECT seq_no, sender_id, client_msg_id, content, edited_at IS NOT "
                            "NULL, deleted_at IS NOT NULL FROM rm.messages WHERE convo_id = %s "
                            "ORDER BY seq_no", (convo,)).fetchall()


def read_seqs(convo):
    with pg() as conn:
        return dict(conn.execute("SELECT user_id, read_seq FROM rm.members WHERE convo_id = %s",
                                 (convo,)).fetchall())


# ---- the tests ----

def test_every_kind_of_event_lands_in_both_models(commands, brokers, r):
    convo = new_id("c")
    listener = pg()
    listener.execute("LISTEN kchat_applied")
    create_id, add_id, bad_id = (str(uuid.uuid4()) for _ in range(3))
    create(commands, convo, "u1", ["u2", "u3"], command_id=create_id)
    for i in range(1, 6):
        commands.send(send_message(convo, ("u1", "u2")[i % 2], f"m{i}", f"hello {i} \"quoted\" \\"))
    commands.send(command(convo, "u3", "SetReadMarker", {"seq_no": 4}))
    commands.send(command(convo, "u3", "SetReadMarker", {"seq_no": 2}))  # never moves back
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 2, "content": "edited twice"}))
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 2, "content": "edited once more"}))
    commands.send(command(convo, "u2", "DeleteMessage", {"seq_no": 3}))
    commands.send(command(convo, "u1", "AddMembers", {"members": ["u4"]}, origin="api:7",
                          command_id=add_id))
    commands.send(command(convo, "u1", "RemoveMembers", {"members": ["u3"]}))
    commands.send(command(convo, "u9", "SetReadMarker", {"seq_no": 1}, origin="api:7",
                          command_id=bad_id))  # not a member: rejected
    commands.send(send_message(convo, "u4", "m6", "from the new member"))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 6 and read_seqs(convo).get("u4") == 6,
               "the conversation in Postgres")

    assert messages_of(convo) == [
        (1, "u2", "m1", 'hello 1 "quoted" \\', False, False),
        (2, "u1", "m2", "edited once more", True, False),
        (3, "u2", "m3", "", False, True),
        (4, "u1", "m4", 'hello 4 "quoted" \\', False, False),
        (5, "u2", "m5", 'hello 5 "quoted" \\', False, False),
        (6, "u4", "m6", "from the new member", False, False)]
    # A sender's own message moves their read position; markers only move forward; u3 left.
    assert read_seqs(convo) == {"u1": 4, "u2": 5, "u4": 6}
    with pg() as conn:
        title, created_by, last_seq = conn.execute(
            "SELECT title, created_by, last_seq FROM rm.conversations WHERE convo_id = %s",
            (convo,)).fetchone()
        unread = dict(conn.execute(
            "SELECT m.user_id, c.last_seq - m.read_seq FROM rm.members m JOIN rm.conversations c "
            "USING (convo_id) WHERE convo_id = %s", (convo,)).fetchall())
        found = conn.execute("SELECT seq_no FROM rm.messages WHERE convo_id = %s AND search @@ "
                             "to_tsquery('simple', 'member')", (convo,)).fetchall()
    assert (title, created_by, last_seq) == (f"title of {convo}", "u1", 6)
    assert unread == {"u1": 2, "u2": 1, "u4": 0}
    assert found == [(6,)], "the full-text index finds the message"

    # Redis: the same conversation, with unread derived from last_seq and read_seq.
    def redis_has_it():
        gen = r.get("kchat:rm:gen")
        return gen and r.hget(f"kchat:rm:{gen}:read:{convo}", "u4") == "6"
    wait_until(redis_has_it, "the conversation in Redis")
    p = f"kchat:rm:{r.get('kchat:rm:gen')}:"
    h = r.hgetall(p + f"convo:{convo}")
    assert h["title"] == f"title of {convo}" and h["last_seq"] == "6"
    assert json.loads(h["last_message"])["client_msg_id"] == "m6"
    assert r.smembers(p + f"members:{convo}") == {"u1", "u2", "u4"}
    reads = r.hgetall(p + f"read:{convo}")
    assert {u: int(h["last_seq"]) - int(s) for u, s in reads.items()} == unread
    recent = [json.loads(m) for m in r.zrange(p + f"recent:{convo}", 0, -1)]
    assert [(m["seq_no"], m["content"]) for m in recent] == [
        (s, c) for s, _, _, c, _, _ in messages_of(convo)]
    assert recent[1]["edited_at"] and recent[2]["deleted_at"]
    assert r.zscore(p + "convos:u3", convo) is None, "a removed member's list loses it"
    for u in ("u1", "u2", "u4"):
        assert r.zscore(p + f"convos:{u}", convo) == float(h["last_activity"])

    # NOTIFY kchat_applied for the api: commands, the rejection with its reason.
    wanted = {create_id, add_id, bad_id}
    got = {}
    for note in listener.notifies(timeout=30, stop_after=None):
        payload = json.loads(note.payload)
        if payload["command_id"] in wanted:
            got[payload["command_id"]] = payload
        if set(got) == wanted:
            break
    assert set(got) == wanted
    listener.close()
    assert got[create_id] == {"command_id": create_id, "convo_id": convo,
                              "type": "ConversationCreated"}
    assert got[add_id]["type"] == "MembersAdded"
    assert got[bad_id]["type"] == "CommandRejected" and got[bad_id]["reason"] == "not_member"
    assert got[bad_id]["message"]


def test_roles_topic_and_departures_land_in_both_models(commands, brokers, r):
    convo = new_id("c")
    create(commands, convo, "u1", ["u2", "u3", "u4"])
    commands.send(send_message(convo, "u2", "r1", "one"))
    commands.send(command(convo, "u1", "UpdateConversation", {"title": "renamed", "topic": None}))
    commands.send(command(convo, "u1", "UpdateConversation", {"title": None, "topic": "a topic"}))
    commands.send(command(convo, "u1", "SetRole", {"user_id": "u2", "role": "admin"}))
    commands.send(command(convo, "u1", "SetRole", {"user_id": "u3", "role": "admin"}))
    commands.send(command(convo, "u1", "SetRole", {"user_id": "u3", "role": "member"}))
    commands.send(send_message(convo, "u2", "r2", "two"))
    commands.send(command(convo, "u2", "RemoveMembers", {"members": ["u4"]}))  # admin removes
    commands.send(command(convo, "u1", "RemoveMembers", {"members": ["u1"]}))  # the owner leaves
    commands.send(command(convo, "u2", "AddMembers", {"members": ["u4"]}))  # back again
    commands.send(command(convo, "u3", "RemoveMembers", {"members": ["u3"]}))  # u3 leaves
    commands.send(send_message(convo, "u4", "r3", "three"))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 3, "the conversation in Postgres")
    wait_caught_up(brokers, r)
    with pg() as conn:
        assert conn.execute("SELECT title, topic FROM rm.conversations WHERE convo_id = %s",
                            (convo,)).fetchone() == ("renamed", "a topic")
        assert dict(conn.execute("SELECT user_id, role FROM rm.members WHERE convo_id = %s",
                                 (convo,)).fetchall()) == {"u2": "owner", "u4": "member"}
        assert dict(conn.execute("SELECT user_id, left_seq FROM rm.departures "
                                 "WHERE convo_id = %s", (convo,)).fetchall()) == {"u1": 2, "u3": 2}
    p = f"kchat:rm:{r.get('kchat:rm:gen')}:"
    h = r.hgetall(p + f"convo:{convo}")
    assert (h["title"], h["topic"]) == ("renamed", "a topic")
    assert r.hgetall(p + f"roles:{convo}") == {"u2": "owner"}
    assert r.smembers(p + f"members:{convo}") == {"u2", "u4"}
    want_pg, want_redis = expected_models(read_all_events(brokers))
    got_pg, got_redis = pg_dump(), redis_dump(r)
    for table in ("conversations", "members", "departures"):
        assert {k: v for k, v in got_pg[table].items() if k == convo or k[0] == convo} == \
            {k: v for k, v in want_pg[table].items() if k == convo or k[0] == convo}, table
    for kind in ("convo", "members", "read", "roles"):
        assert got_redis.get(f"{kind}:{convo}") == want_redis.get(f"{kind}:{convo}"), kind


def test_reactions_land_in_both_models(commands, brokers, r):
    convo = new_id("rx")
    listener = pg()
    listener.execute("LISTEN kchat_applied")
    create(commands, convo, "u1", ["u2", "u3"])
    for i in range(1, 4):
        commands.send(send_message(convo, "u1", f"x{i}", f"message {i} \"q\" / \\"))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 3, "the messages in Postgres")
    p = f"kchat:rm:{r.get('kchat:rm:gen')}:"
    wait_until(lambda: r.zcard(p + f"recent:{convo}") == 3, "the messages in Redis")
    before = {s: m for m, s in r.zrange(p + f"recent:{convo}", 0, -1, withscores=True)}

    rx = Reactions(commands, convo)
    thumbs, heart, party, eyes = "\U0001F44D", "\u2764\ufe0f", "\U0001F389", "\U0001F440"
    rx.react("u1", 1, thumbs)
    rx.react("u2", 1, thumbs)
    rx.react("u3", 1, heart)
    set_id = str(uuid.uuid4())
    rx.react("u2", 1, heart, origin="api:0", command_id=set_id)  # replaced
    remove_id = str(uuid.uuid4())
    rx.react("u3", 1, None, origin="api:0", command_id=remove_id)  # removed
    rx.react("u1", 2, party)
    rx.react("u2", 2, party)
    rx.react("u2", 3, eyes)  # the conversation's last message
    rx.react("u1", 3, None)  # nothing to remove: nothing changes
    commands.flush()
    wait_caught_up(brokers, r)
    assert reactions_of(convo) == {(1, "u1"): thumbs, (1, "u2"): heart, (2, "u1"): party,
                                   (2, "u2"): party, (3, "u2"): eyes}

    recent = {s: m for m, s in r.zrange(p + f"recent:{convo}", 0, -1, withscores=True)}
    # the counts as the event gave them (ties in byte order), who reacted with what
    m1 = json.loads(recent[1])
    assert m1["reactions"] == [{"emoji": heart, "count": 1}, {"emoji": thumbs, "count": 1}]
    assert m1["reacted"] == {"u1": thumbs, "u2": heart}
    # the rest of the JSON is byte for byte what it was, `reacted` after `reactions`
    assert before[1].endswith(',"deleted_at":null,"reactions":[]}')
    assert recent[1] == before[1][:-len('[]}')] + json.dumps(
        m1["reactions"], ensure_ascii=False, separators=(",", ":")) + \
        ',"reacted":{"u1":"%s","u2":"%s"}}' % (thumbs, heart)
    assert json.loads(recent[2])["reactions"] == [{"emoji": party, "count": 2}]
    assert json.loads(recent[3])["reacted"] == {"u2": eyes}
    last = json.loads(r.hget(p + f"convo:{convo}", "last_message"))
    assert (last["seq_no"], last["reactions"]) == (3, [{"emoji": eyes, "count": 1}])
    assert "reacted" not in last, "last_message has the counts only"

    # the last reaction of a message removed: "reacted" goes, "reactions" is []
    rx.react("u2", 3, None)
    commands.flush()
    wait_caught_up(brokers, r)
    assert r.zrange(p + f"recent:{convo}", 2, 2) == [before[3]]
    assert (3, "u2") not in reactions_of(convo)

    # a deleted message loses its reactions in both models; the others keep theirs
    commands.send(command(convo, "u1", "DeleteMessage", {"seq_no": 2}))
    commands.flush()
    rx.deleted(2)
    wait_until(lambda: messages_of(convo)[1][5], "the delete in Postgres")
    wait_caught_up(brokers, r)
    assert reactions_of(convo) == {(1, "u1"): thumbs, (1, "u2"): heart}
    m2 = json.loads(r.zrange(p + f"recent:{convo}", 1, 1)[0])
    assert (m2["deleted_at"] is not None, m2["reactions"]) == (True, [])
    assert "reacted" not in m2
    assert json.loads(r.zrange(p + f"recent:{convo}", 0, 0)[0])["reacted"] == \
        {"u1": thumbs, "u2": heart}
    # and an edit keeps them, and the JSON's order
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 1, "content": "edited"}))
    commands.flush()
    wait_until(lambda: messages_of(convo)[0][4], "the edit in Postgres")
    wait_caught_up(brokers, r)
    edited = r.zrange(p + f"recent:{convo}", 0, 0)[0]
    assert list(json.loads(edited)) == list(json.loads(recent[1]))
    assert json.loads(edited)["reactions"] == m1["reactions"]

    # both models are what the events alone give
    want_pg, want_redis = expected_models(read_all_events(brokers))
    got_pg, got_redis = pg_dump(), redis_dump(r)
    assert {k: v for k, v in got_pg["reactions"].items() if k[0] == convo} == \
        {k: v for k, v in want_pg["reactions"].items() if k[0] == convo}
    for kind in ("convo", "recent"):
        assert got_redis[f"{kind}:{convo}"] == want_redis[f"{kind}:{convo}"], kind

    # the API's wait ends: kchat_applied for the api: commands
    got = {}
    for note in listener.notifies(timeout=30, stop_after=None):
        payload = json.loads(note.payload)
        if payload["command_id"] in (set_id, remove_id):
            got[payload["command_id"]] = payload
        if len(got) == 2:
            break
    listener.close()
    assert got == {i: {"command_id": i, "convo_id": convo, "type": "ReactionChanged"}
                   for i in (set_id, remove_id)}


def test_notify_comes_once_the_event_is_in_both_models(commands, brokers, r):
    listener = pg()
    listener.execute("LISTEN kchat_applied")
    convos = {str(uuid.uuid4()): new_id("c") for _ in range(20)}
    for command_id, convo in convos.items():
        create(commands, convo, "u1", ["u2"], command_id=command_id)
    commands.flush()
    seen = set()
    for note in listener.notifies(timeout=60, stop_after=None):
        payload = json.loads(note.payload)
        convo = convos.get(payload["command_id"])
        if convo is None:
            continue
        # At the moment the API would answer, both read models hold the conversation.
        gen = r.get("kchat:rm:gen")
        assert r.hget(f"kchat:rm:{gen}:convo:{convo}", "created_by") == "u1"
        assert r.sismember(f"kchat:rm:{gen}:members:{convo}", "u2")
        assert read_seqs(convo) == {"u1": 0, "u2": 0}
        seen.add(payload["command_id"])
        if seen == set(convos):
            break
    listener.close()
    assert seen == set(convos), "one notification per api: command"


def test_health_and_metrics(commands, brokers, r):
    status, _, text = http_get(ADMIN + "/health")
    assert status == 200
    checks = json.loads(text)["checks"]
    assert {"kafka_consumer", "postgres", "redis"} <= set(checks)
    assert all(c["ok"] for c in checks.values())
    wait_caught_up(brokers, r)
    text = scrape(ADMIN)
    for series in ('kchat_projector_events_applied_total{model="postgres"}',
                   'kchat_projector_events_applied_total{model="redis"}',
                   'kchat_projector_apply_seconds_count{model="postgres"}',
                   'kchat_projector_apply_seconds_count{model="redis"}',
                   "kchat_projector_batch_events_count"):
        assert sample(text, series) > 0, series
    lags = [line for line in text.splitlines() if line.startswith("kchat_projector_lag_events{")]
    assert len(lags) == len(topic_ends(brokers))
    assert all(line.endswith(" 0") for line in lags), "caught up: no lag on any partition"


def test_progress_is_committed_to_kafka_for_the_standard_tools(commands, brokers, r):
    """The models' offsets are the truth; the projector also commits them to its group, so
    kafka-consumer-groups shows its lag like any consumer's."""
    convo, a = new_id("c"), new_id("u")
    commands.send(command(convo, a, "CreateConversation", {"title": "t", "members": []}))
    commands.flush()
    wait_caught_up(brokers, r)
    ends = topic_ends(brokers)
    c = Consumer({"bootstrap.servers": brokers, "group.id": "kchat-projector"})
    try:
        seen = {}

        def at_the_ends():
            got = c.committed([TopicPartition(TOPIC, p) for p in ends], timeout=10)
            seen.update({t.partition: t.offset for t in got})
            # (at least: an event written since the ends were read moves them on)
            # (a partition still empty has nothing to commit)
            return all(end == 0 or seen.get(p, -1) >= end for p, end in ends.items())
        try:
            wait_until(at_the_ends, "the group's committed offsets at the ends", timeout=30)
        except WaitTimeout:
            raise AssertionError(f"committed {seen}, the ends {ends}") from None
    finally:
        c.close()
    # The standard tool reads them: every partition of chat.events with lag 0.
    out = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "groups",
                          "--describe", "--group", "kchat-projector"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("kchat-projector")]
    rows = [row for row in rows if row[1] == TOPIC]
    assert len(rows) == len(ends), out.stdout
    # The tool shows the offsets the group committed (at least the ends read above) and the
    # lag from them. Other tests' events written since make the log end move on, so a lag of
    # 0 is asserted only where the end is still the one read above.
    for row in rows:
        part = int(row[2])
        if row[3] == "-":  # nothing committed: only a partition empty when the ends were read
            assert ends[part] == 0, out.stdout
            continue
        current, end, lag = int(row[3]), int(row[4]), int(row[5])
        assert current >= ends[part] and lag == end - current, out.stdout
        assert lag == 0 or end > ends[part], out.stdout


def skip_event(partition, offset, reason="written on purpose by a test"):
    return subprocess.run([str(BUILD / "ctl" / "kchatctl"), "skip-event",
                           f"--partition={partition}", f"--offset={offset}", f"--reason={reason}"],
                          capture_output=True, text=True, timeout=60)


def events_check():
    status, _, body = http_get(ADMIN + "/health")
    return status, json.loads(body)["checks"]["events"]


def test_an_undecodable_event_stops_its_partition_until_it_is_skipped(commands, brokers, r):
    convo = new_id("c")
    create(commands, convo, "u1", ["u2"])
    commands.flush()
    wait_until(lambda: read_seqs(convo), "the conversation")
    before = metric(ADMIN, "kchat_projector_poison_events_total")
    assert events_check() == (200, {"ok": True})
    # Three records no projector can read, on the conversation's partition, then a message.
    at = []
    for raw in (b"not avro", b"\x00\x00\x00\x00\x63garbage", b""):
        commands.p.produce(TOPIC, key=convo.encode(), value=raw,
                           on_delivery=lambda e, m: at.append((m.partition(), m.offset())))
    commands.flush()
    assert len(at) == 3 and len({p for p, _ in at}) == 1
    part, offsets = at[0][0], sorted(o for _, o in at)
    try:
        commands.send(send_message(convo, "u2", "after", "after the undecodable records"))
        meta = Consumer({"bootstrap.servers": brokers, "group.id": new_id("meta")})
        nparts = len(meta.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
        meta.close()
        others = [new_id("o") for _ in range(12)]
        for cv in others:
            create(commands, cv, "u1", ["u2"])
            commands.send(send_message(cv, "u1", "m1", "elsewhere"))
        commands.flush()
        # where each conversation is: the stopped partition, or another
        held = [cv for cv in others if java_partition(cv.encode(), nparts) == part]
        free = [cv for cv in others if cv not in held]
        assert free, "12 conversations, none in another partition"

        # The partition stops at the first record and says so; the other partitions go on.
        wait_until(lambda: all(messages_of(cv) for cv in free), "the other partitions applied")
        wait_until(lambda: events_check()[0] == 503, "/health failing")
        status, check = events_check()
        assert check["ok"] is False
        assert f"partition {part} stopped at offset {offsets[0]}" in check["detail"]
        assert metric(ADMIN, "kchat_projector_halted_partitions") == 1
        log = (ROOT / os.environ["KCHAT_STATE_DIR"] / "logs" / "projector.log").read_text()
        assert "undecodable event: the partition is stopped there" in log
        assert messages_of(convo) == [], "nothing after the record is applied"
        assert [cv for cv in held if messages_of(cv) or read_seqs(cv)] == []

        # kchatctl refuses a skip without a reason; named, the projector goes on to the next.
        bad = skip_event(part, offsets[0], reason="")
        assert bad.returncode == 2 and "--reason is required" in bad.stderr
        ok = skip_event(part, offsets[0])
        assert ok.returncode == 0, ok.stderr
        assert "will be passed over" in ok.stdout
        assert "already passed over" in skip_event(part, offsets[0]).stdout
        wait_until(lambda: f"stopped at offset {offsets[1]}" in
                   (events_check()[1].get("detail") or ""),
                   "the partition stopped at the next record", timeout=60)
    finally:  # never leave the shared topic's partition stopped for the tests after this one
        for o in offsets:
            assert skip_event(part, o).returncode == 0
    wait_until(lambda: len(messages_of(convo)) == 1, "the message after the records", timeout=60)
    assert messages_of(convo)[0][2] == "after"
    wait_until(lambda: all(messages_of(cv) for cv in others), "every other conversation")
    assert events_check() == (200, {"ok": True})
    assert metric(ADMIN, "kchat_projector_halted_partitions") == 0
    assert metric(ADMIN, "kchat_projector_poison_events_total") >= before + 3
    with pg() as conn:
        rows = conn.execute('SELECT partition, "offset", reason FROM event_skips WHERE topic = %s '
                            'AND partition = %s AND "offset" = ANY(%s) ORDER BY 2',
                            (TOPIC, part, offsets)).fetchall()
    assert rows == [(part, o, "written on purpose by a test") for o in offsets]
    wait_caught_up(brokers, r)


def test_a_rebuild_stops_with_an_error_at_an_undecodable_event_nobody_named(commands, brokers, r,
                                                                            tmp_path):
    convo = new_id("rb")
    create(commands, convo, "u1", ["u2"])
    commands.flush()
    wait_until(lambda: read_seqs(convo), "the conversation")
    at = []
    commands.p.produce(TOPIC, key=convo.encode(), value=b"\x00\x00\x00\x00\x63not an event",
                       on_delivery=lambda e, m: at.append((m.partition(), m.offset())))
    commands.flush()
    (part, offset), = at
    try:
        log_path = tmp_path / "rebuild.log"
        with open(log_path, "w") as log:
            rb = subprocess.run([str(BUILD / "projector" / "kchat-projector"), "--rebuild",
                                 "--admin-port=0", f"--schemas-dir={ROOT / 'schemas'}"],
                                stdout=log, stderr=subprocess.STDOUT, env=os.environ, timeout=300)
        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        assert rb.returncode == 1, log_path.read_text()[-2000:]
        stop = next(line for line in lines
                    if line["msg"].startswith("undecodable event: the partition is stopped"))
        assert (stop["partition"], stop["offset"]) == (part, offset)
        assert any(line["msg"] == "giving up: the rebuild met an undecodable event"
                   for line in lines)
        assert not any("swapped in" in line["msg"] for line in lines)
    finally:
        assert skip_event(part, offset).returncode == 0
    # the live models were left alone, and the live projector goes on past the named record
    wait_until(lambda: events_check() == (200, {"ok": True}), "the live projector going on",
               timeout=60)
    wait_caught_up(brokers, r)


def load(brokers, convos, per_convo, tag):
    c = Commands(brokers)
    for i in range(per_convo):
        for cv in convos:
            c.send(send_message(cv, ("u1", "u2", "u3")[i % 3], f"{tag}-{i}", f"load {tag} {i}"))
            if i % 200 == 0:
                c.p.poll(0)
    c.flush()


def test_kill_9_under_load_applies_every_event_once(commands, brokers, r):
    convos = [new_id("k9") for _ in range(20)]
    for cv in convos:
        create(commands, cv, "u1", ["u2", "u3"], origin="gateway:0")
    commands.flush()
    wait_until(lambda: all(read_seqs(cv) for cv in convos), "the conversations")
    per = 2500
    loader = threading.Thread(target=load, args=(brokers, convos, per, "k9"))
    loader.start()

    def applied():
        with pg() as conn:
            return conn.execute("SELECT count(*) FROM rm.messages WHERE convo_id = ANY(%s)",
                                (convos,)).fetchone()[0]
    wait_until(lambda: applied() >= 5000, "part of the load applied", timeout=120)
    subprocess.run(STACK + ["kill", "projector"], check=True, capture_output=True)
    killed_at = applied()
    loader.join()
    assert killed_at < 20 * per, "the kill came in the middle of the load"
    wait_until(lambda: applied() >= 20 * per, "the whole load applied", timeout=180)
    wait_caught_up(brokers, r)
    with pg() as conn:
        rows = conn.execute(
            "SELECT convo_id, count(*), min(seq_no), max(seq_no), count(DISTINCT client_msg_id), "
            "bool_and(content = 'load k9 ' || split_part(client_msg_id, '-', 2)) "
            "FROM rm.messages WHERE convo_id = ANY(%s) GROUP BY convo_id", (convos,)).fetchall()
        last = dict(conn.execute("SELECT convo_id, last_seq FROM rm.conversations "
                                 "WHERE convo_id = ANY(%s)", (convos,)).fetchall())
    assert len(rows) == 20
    for cv, n, lo, hi, distinct, contents_ok in rows:
        assert (n, lo, hi, distinct) == (per, 1, per, per), f"{cv}: each message exactly once"
        assert contents_ok, f"{cv}: contents as sent"
        assert last[cv] == per
    gen = r.get("kchat:rm:gen")
    for cv in convos:
        assert r.hget(f"kchat:rm:{gen}:convo:{cv}", "last_seq") == str(per)
        assert r.zcard(f"kchat:rm:{gen}:recent:{cv}") == RECENT
        assert r.zrange(f"kchat:rm:{gen}:recent:{cv}", 0, 0, withscores=True)[0][1] == \
            per - RECENT + 1


def test_a_second_projector_joining_and_leaving_mid_load_applies_every_event_once(
        commands, brokers, r, tmp_path):
    convos = [new_id("rb2") for _ in range(12)]
    for cv in convos:
        create(commands, cv, "u1", ["u2", "u3"], origin="gateway:0")
    commands.flush()
    wait_until(lambda: all(read_seqs(cv) for cv in convos), "the conversations")
    per = 1500
    loader = threading.Thread(target=load, args=(brokers, convos, per, "j2"))
    loader.start()
    log_path = tmp_path / "second.log"
    second = Daemon(DAEMONS["projector"]["binary"],
                    ["--admin-port=0", f"--schemas-dir={ROOT / 'schemas'}"], log_path)
    try:
        wait_until(lambda: "partition assigned" in log_path.read_text(),
                   "the second projector to take a share of the partitions")
        assert second.stop(timeout=60) == 0
    finally:
        second.stop(signal.SIGKILL)
    loader.join()

    def applied():
        with pg() as conn:
            return conn.execute("SELECT count(*) FROM rm.messages WHERE convo_id = ANY(%s)",
                                (convos,)).fetchone()[0]
    wait_until(lambda: applied() >= 12 * per, "the whole load applied", timeout=120)
    wait_caught_up(brokers, r)
    with pg() as conn:
        rows = conn.execute(
            "SELECT convo_id, count(*), min(seq_no), max(seq_no), count(DISTINCT client_msg_id) "
            "FROM rm.messages WHERE convo_id = ANY(%s) GROUP BY convo_id", (convos,)).fetchall()
    assert sorted(n for _, *n in rows) == [[per, 1, per, per]] * 12
    gen = r.get("kchat:rm:gen")
    for cv in convos:
        assert r.hget(f"kchat:rm:{gen}:convo:{cv}", "last_seq") == str(per)


@pytest.mark.parametrize("service", ["pg", "redis"])
def test_a_model_store_restarted_mid_load_loses_and_duplicates_nothing(commands, brokers, r,
                                                                       service):
    convos = [new_id(f"rs-{service}") for _ in range(6)]
    for cv in convos:
        create(commands, cv, "u1", ["u2", "u3"], origin="gateway:0")
    commands.flush()
    wait_until(lambda: all(read_seqs(cv) for cv in convos), "the conversations")
    per = 1000
    loader = threading.Thread(target=load, args=(brokers, convos, per, "rs"))
    loader.start()
    script = str(ROOT / "scripts" / f"{service}.sh")
    subprocess.run([script, "stop"], check=True, capture_output=True)
    time.sleep(1)
    subprocess.run([script, "start"], check=True, capture_output=True)
    loader.join()

    def applied():
        with pg() as conn:
            return conn.execute("SELECT count(*) FROM rm.messages WHERE convo_id = ANY(%s)",
                                (convos,)).fetchone()[0]
    wait_until(lambda: applied() >= 6 * per, "the whole load applied", timeout=120)
    wait_caught_up(brokers, r)
    with pg() as conn:
        rows = conn.execute(
            "SELECT count(*), min(seq_no), max(seq_no), count(DISTINCT client_msg_id) "
            "FROM rm.messages WHERE convo_id = ANY(%s) GROUP BY convo_id", (convos,)).fetchall()
    assert rows == [(per, 1, per, per)] * 6
    gen = r.get("kchat:rm:gen")
    for cv in convos:
        assert r.hget(f"kchat:rm:{gen}:convo:{cv}", "last_seq") == str(per)
        assert r.zcard(f"kchat:rm:{gen}:recent:{cv}") == RECENT


def test_redis_flushed_is_rebuilt_from_the_log_and_equal(commands, brokers, r):
    convo = new_id("c")
    create(commands, convo, "u1", ["u2"])
    commands.send(send_message(convo, "u2", "before-flush", "before"))
    commands.send(send_message(convo, "u1", "reacted-to", "reacted to"))
    commands.send(send_message(convo, "u1", "edited", "to be edited"))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 3, "the messages in Postgres")
    rx = Reactions(commands, convo)
    rx.react("u1", 2, "\u2764\ufe0f")
    rx.react("u2", 2, "+1")
    rx.react("u2", 3, "+1")
    commands.flush()
    commands.send(command(convo, "u1", "EditMessage", {"seq_no": 3, "content": "edited"}))
    commands.flush()
    wait_until(lambda: messages_of(convo)[2][4], "the edit in Postgres")
    wait_caught_up(brokers, r)
    before = redis_dump(r)
    raw = r.zrange(f"kchat:rm:{r.get('kchat:rm:gen')}:recent:{convo}", 0, -1)
    assert json.loads(raw[1])["reacted"] == {"u1": "\u2764\ufe0f", "u2": "+1"}
    rebuilt = metric(ADMIN, 'kchat_projector_rebuilds_total{kind="redis_flush"}')
    r.flushall()
    wait_caught_up(brokers, r)
    assert redis_dump(r) == before
    # the messages' JSON, reactions and edits included, byte for byte
    assert r.zrange(f"kchat:rm:{r.get('kchat:rm:gen')}:recent:{convo}", 0, -1) == raw
    assert metric(ADMIN, 'kchat_projector_rebuilds_total{kind="redis_flush"}') == rebuilt + 1
    # And it keeps following the log.
    commands.send(send_message(convo, "u1", "after-flush", "after"))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 4, "the next message in Postgres")
    wait_caught_up(brokers, r)
    gen = r.get("kchat:rm:gen")
    assert r.hget(f"kchat:rm:{gen}:convo:{convo}", "last_seq") == "4"


def test_scripts_flushed_mid_load_are_loaded_again_and_nothing_is_lost(commands, brokers, r):
    """The batch script is called by its sha (EVALSHA); Redis forgets it on SCRIPT FLUSH (and
    on a restart). The projector loads it again on NOSCRIPT and the batch is applied then:
    no batch is given up, and the model equals one computed from the events."""
    convos = [new_id("sf") for _ in range(4)]
    for cv in convos:
        create(commands, cv, "u1", ["u2", "u3"], origin="gateway:0")
    commands.flush()
    wait_until(lambda: all(read_seqs(cv) for cv in convos), "the conversations")
    wait_caught_up(brokers, r)
    resyncs = metric(ADMIN, "kchat_projector_resyncs_total")
    per = 400
    loader = threading.Thread(target=load, args=(brokers, convos, per, "sf"))
    loader.start()
    flushes = 0
    while loader.is_alive() or flushes < 3:
        r.script_flush()
        flushes += 1
        time.sleep(0.05)
    loader.join()
    r.script_flush()
    commands.send(command(convos[0], "u2", "SetReadMarker", {"seq_no": per}))
    commands.flush()

    def applied():
        with pg() as conn:
            return conn.execute("SELECT count(*) FROM rm.messages WHERE convo_id = ANY(%s)",
                                (convos,)).fetchone()[0]
    # The processor has turned every command into an event, and both models hold them all.
    wait_until(lambda: applied() >= len(convos) * per and read_seqs(convos[0])["u2"] == per,
               "the whole load applied", timeout=180)
    wait_caught_up(brokers, r)
    assert metric(ADMIN, "kchat_projector_resyncs_total") == resyncs, "no batch was given up"
    _, want = expected_models(read_all_events(brokers))
    got = redis_dump(r)
    for cv in convos:
        for kind in ("convo", "members", "read", "recent"):
            assert got[f"{kind}:{cv}"] == want[f"{kind}:{cv}"], (kind, cv)
        assert len(got[f"recent:{cv}"]) == RECENT
        assert got[f"convo:{cv}"]["last_seq"] == str(per)
    for u in ("u1", "u2", "u3"):
        assert got["lastseen"][u] == want["lastseen"][u]
        assert [x for x in got[f"convos:{u}"] if x[0] in convos] == \
            [x for x in want[f"convos:{u}"] if x[0] in convos]


def test_rebuild_while_messages_flow_swaps_in_equal_models(commands, brokers, r, tmp_path):
    wait_caught_up(brokers, r)
    live_pg, live_redis = pg_dump(), redis_dump(r)
    with pg() as conn:
        old_pg_gen = conn.execute("SELECT generation FROM rm.meta").fetchone()[0]
    old_gen = int(r.get("kchat:rm:gen"))

    flowing = [new_id("rb") for _ in range(4)]
    for cv in flowing:
        create(commands, cv, "u1", ["u2", "u3"])
    # and one whose messages get reactions while the rebuild runs
    reacted = new_id("rbx")
    create(commands, reacted, "u1", ["u2", "u3"])
    for i in range(1, 6):
        commands.send(send_message(reacted, "u1", f"rbx-{i}", f"react to {i}"))
    commands.flush()
    wait_until(lambda: all(read_seqs(cv) for cv in flowing) and len(messages_of(reacted)) == 5,
               "the conversations")
    stop = threading.Event()
    sent = {"n": 0}

    def flow():
        c = Commands(brokers)
        rx = Reactions(c, reacted)
        i = 0
        while not stop.is_set():
            for cv in flowing:
                c.send(send_message(cv, ("u1", "u2", "u3")[i % 3], f"rb-{i}", f"flow {i}"))
            # set, replaced, removed, by three members on five messages
            rx.react(("u1", "u2", "u3")[i % 3], i % 5 + 1, ("+1", "\U0001F44D", None, "ok")[i % 4])
            i += 1
            if i % 10 == 0:  # about 400 messages/s at most: well below any rebuild's pace
                c.flush()
                time.sleep(0.1)
        c.flush()
        sent["n"] = i * len(flowing)

    def flow_applied():
        with pg() as conn:
            return conn.execute("SELECT count(*) FROM rm.messages WHERE convo_id = ANY(%s)",
                                (flowing,)).fetchone()[0]

    sender = threading.Thread(target=flow)
    sender.start()
    log_path = tmp_path / "rebuild.log"
    try:
        with open(log_path, "w") as log:
            rb = subprocess.run([str(BUILD / "projector" / "kchat-projector"), "--rebuild",
                                 "--admin-port=0", f"--schemas-dir={ROOT / 'schemas'}",
                                 "--progress-interval-ms=200"],
                                stdout=log, stderr=subprocess.STDOUT, env=os.environ, timeout=170)
    finally:
        stop.set()
        sender.join()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert rb.returncode == 0, log_path.read_text()[-2000:]
    msgs = [line["msg"] for line in lines]
    assert "rebuild caught up; swapping it in" in msgs
    assert "Redis read model swapped in; rebuild done" in msgs
    done = next(line for line in lines if line["msg"] == "rebuild caught up; swapping it in")
    print(f"\nrebuild: {done['events']} events in {done['ms']} ms, "
          f"{done['events_per_s']} events/s")
    progress = [line for line in lines if line["msg"] == "rebuild progress"]
    if done["ms"] >= 1000:  # logged every 200 ms: a run this long logs it
        assert progress and {"events", "events_per_s", "lag", "eta_s"} <= set(progress[0])

    assert sent["n"] > 0
    wait_until(lambda: flow_applied() >= sent["n"], "the whole flow applied", timeout=120)
    wait_caught_up(brokers, r)
    with pg() as conn:
        assert conn.execute("SELECT generation FROM rm.meta").fetchone()[0] == old_pg_gen + 1
        leftovers = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm_%%'"
                                 ).fetchall()
    assert leftovers == [], "rm_next was renamed and the old schema dropped"
    assert int(r.get("kchat:rm:gen")) == old_gen + 1
    assert not list(r.scan_iter(match=f"kchat:rm:{old_gen}:*", count=1000)), \
        "the old generation's keys are gone"

    # The swapped-in models equal a model computed from chat.events alone...
    want_pg, want_redis = expected_models(read_all_events(brokers))
    got_pg, got_redis = pg_dump(), redis_dump(r)
    assert got_pg == want_pg
    assert got_redis == want_redis
    assert any(k[0] == reacted for k in got_pg["reactions"]), "reactions were rebuilt"
    assert any("reacted" in m for m, _ in got_redis[f"recent:{reacted}"])
    # ... and what the live models held before, for every conversation the flow left alone.
    for table, rows in live_pg.items():
        for k, v in rows.items():
            assert got_pg[table][k] == v, (table, k)
    for k, v in live_redis.items():
        if k.startswith(("convo:", "members:", "read:", "recent:")):
            assert got_redis[k] == v, k
    # The flow was applied, gap-free.
    for cv in flowing:
        seqs = [row[0] for row in messages_of(cv)]
        assert seqs == list(range(1, len(seqs) + 1)) and seqs


def test_a_schema_made_by_another_ddl_is_rebuilt_at_start(commands, brokers, r):
    convo = new_id("dd")
    create(commands, convo, "u1", ["u2", "u3"])
    commands.send(send_message(convo, "u2", "d1", "one"))
    commands.send(command(convo, "u1", "UpdateConversation", {"title": None, "topic": "t"}))
    commands.send(command(convo, "u1", "SetRole", {"user_id": "u2", "role": "admin"}))
    commands.send(send_message(convo, "u1", "d2", "two"))
    commands.send(command(convo, "u2", "RemoveMembers", {"members": ["u3"]}))
    commands.flush()
    wait_until(lambda: len(messages_of(convo)) == 2, "the conversation")
    rx = Reactions(commands, convo)
    rx.react("u1", 1, "+1")
    rx.react("u2", 1, "+1")
    rx.react("u2", 2, "ok")
    commands.flush()
    commands.send(command(convo, "u1", "DeleteMessage", {"seq_no": 2}))
    commands.flush()
    wait_until(lambda: messages_of(convo)[1][5], "the delete")
    wait_caught_up(brokers, r)
    assert reactions_of(convo) == {(1, "u1"): "+1", (1, "u2"): "+1"}
    live_pg, live_redis = pg_dump(), redis_dump(r)
    with pg() as conn:
        old_pg_gen = conn.execute("SELECT generation FROM rm.meta").fetchone()[0]
        assert conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                            "WHERE nspname = 'rm'").fetchone()[0].startswith(
                                "kchat-readmodel sha256:")
        # What an older projector made: no topic, roles, departures or reactions, no stamp.
        conn.execute("ALTER TABLE rm.conversations DROP COLUMN topic")
        conn.execute("ALTER TABLE rm.members DROP COLUMN role")
        conn.execute("DROP TABLE rm.departures")
        conn.execute("DROP TABLE rm.reactions")
        conn.execute("COMMENT ON SCHEMA rm IS NULL")
    old_gen = int(r.get("kchat:rm:gen"))
    subprocess.run(STACK + ["restart", "projector"], check=True, capture_output=True)
    wait_caught_up(brokers, r)
    assert metric(ADMIN, 'kchat_projector_rebuilds_total{kind="ddl"}') == 1
    with pg() as conn:
        assert conn.execute("SELECT generation FROM rm.meta").fetchone()[0] == old_pg_gen + 1
        assert conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                            "WHERE nspname = 'rm'").fetchone()[0].startswith(
                                "kchat-readmodel sha256:")
    assert int(r.get("kchat:rm:gen")) == old_gen + 1
    assert not list(r.scan_iter(match=f"kchat:rm:{old_gen}:*", count=1000))
    got_pg, got_redis = pg_dump(), redis_dump(r)
    assert got_pg == live_pg
    assert got_redis == live_redis
    want_pg, want_redis = expected_models(read_all_events(brokers))
    assert got_pg == want_pg
    assert got_redis == want_redis
    # A restart with the schema as it is rebuilds nothing.
    subprocess.run(STACK + ["restart", "projector"], check=True, capture_output=True)
    wait_caught_up(brokers, r)
    assert metric(ADMIN, 'kchat_projector_rebuilds_total{kind="ddl"}') == 0
    assert int(r.get("kchat:rm:gen")) == old_gen + 1
