"""kchat's fault runner: a workload over the public protocol while faults are injected from a
seeded schedule, then a checker of what kchat promises.

    tests/chaos/kchat_chaos.py [--seed N] [--duration S] [--users N] [--report DIR] [--faults K]

It runs against the stack of scripts/env.sh's environment (`make chaos` starts one; the short
version in `make test` uses the test stack). The workload: users registered through the REST
API, each with two devices (WebSockets on different gateways), in 1:1 conversations and groups;
every user sends in turn, and a send that gets no ack (a timeout, a closed socket) is retried
with the same client_msg_id, as the protocol says, until it is acked or its deadline passes.
Devices that lose their socket reconnect with backoff and `sync` every conversation from the
last seq_no they hold.

The faults (a seeded random schedule; the same seed replays the same schedule): kill -9 and
SIGSTOP/SIGCONT of each daemon, of the broker(s) and of the partition leader of chat.events
with several brokers; restarts of Postgres and Redis; a Redis flush; a network partition that
cuts one broker's listeners off (iptables, only inside the network namespace that
scripts/chaos.sh runs the stack in); and two faults at once.

After the last fault it heals (every process running and healthy), waits for quiet, has every
device sync every conversation once more, waits until history holds as many messages as
chat.events (sends never acked may be committed late, and a Redis restart has the projector
replay the topic into the emptied Redis model before Postgres moves on), and checks, for
every acked message: present exactly
once in history (REST, the Postgres model), in the Redis model's recent messages and in
chat.events; delivered to every member device (live or by sync; a sync may repeat what came live, and
the client keeps one per seq_no) with one server_msg_id per seq_no; seq_no gap-free per conversation; each sender's messages in the order they were acked;
nothing rejected that was acked; whatever REST history showed while the faults happened is
what it shows at the end. For every send never acked: absent, or present once. The
report (JSON and text) holds the seed, the schedule, the counts, and per fault the longest time
without any ack while it lasted.
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pylib"))

import redis as redislib  # noqa: E402
import websockets  # noqa: E402

from kchat_testkit import api  # noqa: E402
from kchat_testkit.stack import NGATEWAYS, instance_names  # noqa: E402
from kchat_testkit.wire import body, read_to_end  # noqa: E402

ENV = os.environ
STATE = Path(ENV["KCHAT_STATE_DIR"])
GW_PORT = int(ENV["KCHAT_GATEWAY_PORT"])
STACK = str(ROOT / "scripts" / "stack.sh")
ACK_TIMEOUT = 5.0     # one attempt's wait for an ack
SEND_DEADLINE = 60.0  # a send given up after this long without an ack (then: unacked)


def now():
    return time.monotonic()


# ---- the workload ----

class Device:
    """One WebSocket of a user, on one gateway; reconnects and syncs after any loss."""

    def __init__(self, run, user, index):
        self.run, self.user, self.index = run, user, index
        self.gw = (user.n * 2 + index) % NGATEWAYS
        self.ws = None
        self.connected = asyncio.Event()
        self.acks = {}          # client_msg_id -> Future of the ack frame
        self.got = {}           # convo -> {seq_no: set of server_msg_ids}
        self.frames = 0         # message.create frames received (live and by sync)
        self.reconnects = 0

    def have_upto(self, convo):
        seqs = self.got.get(convo, {})
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    def note(self, f):
        """A message, live or by sync (a sync may repeat what came live: the protocol lets a
        client see a message twice, never miss one, and it keeps one per seq_no)."""
        self.frames += 1
        self.got.setdefault(f["convo_id"], {}).setdefault(f["seq_no"], set()).add(
            f["server_msg_id"])

    async def sync_all(self):
        for convo in self.user.convos:
            await self.ws.send(json.dumps({"type": "sync", "convo_id": convo,
                                           "since_seq": self.have_upto(convo)}))

    async def loop(self):
        backoff = 0.2
        while not self.run.stopping:
            try:
                url = f"ws://127.0.0.1:{GW_PORT + self.gw}/ws"
                async with websockets.connect(
                        url, additional_headers={"Authorization": "Bearer " + self.user.token},
                        open_timeout=5, close_timeout=2, max_size=None) as ws:
                    self.ws, backoff = ws, 0.2
                    await self.sync_all()
                    self.connected.set()
                    async for raw in ws:
                        self.frame(json.loads(raw))
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                if isinstance(e, websockets.InvalidStatus) and e.response.status_code == 401:
                    await asyncio.to_thread(self.user.login)
            finally:
                self.connected.clear()
                self.ws = None
                for fut in self.acks.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("socket lost"))
                self.acks = {}
            if self.run.stopping:
                break
            self.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 3.0)

    def frame(self, f):
        t = f.get("type")
        if t == "ack":
            fut = self.acks.pop(f.get("client_msg_id"), None)
            if fut and not fut.done():
                fut.set_result(f)
        elif t == "message.create":
            self.note(f)
        elif t == "sync.complete" and f.get("more"):
            asyncio.ensure_future(self.ws.send(json.dumps(
                {"type": "sync", "convo_id": f["convo_id"], "since_seq": f["up_to_seq"]})))

    async def send(self, frame):
        """One attempt: the ack frame, or an exception."""
        await asyncio.wait_for(self.connected.wait(), ACK_TIMEOUT)
        fut = asyncio.get_running_loop().create_future()
        self.acks[frame["client_msg_id"]] = fut
        await self.ws.send(json.dumps(frame))
        return await asyncio.wait_for(fut, ACK_TIMEOUT)


class User:
    def __init__(self, n):
        self.n = n
        self.api = api.User(name=f"chaos_{uuid.uuid4().hex[:10]}")
        self.id = self.api.id
        self.convos = []
        self.lock = threading.Lock()
        self.logged_in_at = time.monotonic()

    @property
    def token(self):
        return self.api.token

    def login(self):
        """A new access token after a 401, as a client does: one login at a time for the
        user's devices (the API allows an account one login in flight: 429), none when
        another device got a token in the last seconds, and 429 or 503 (a throttle, the API
        restarting) waited out as Retry-After says. Gives up after a minute; the device then
        retries the socket with its old token, and comes back here."""
        with self.lock:
            if time.monotonic() - self.logged_in_at < 5:
                return
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    r = api.call("POST", "/auth/login", {"username": self.api.name,
                                                         "password": self.api.password},
                                 timeout=10)
                except OSError:
                    time.sleep(1)
                    continue
                if r.status == 200:
                    self.api.token = r.json["access_token"]
                    self.api.refresh_token = r.json["refresh_token"]
                    self.logged_in_at = time.monotonic()
                    return
                if r.status not in (429, 503):
                    raise AssertionError(f"login of {self.api.name}: {r!r}")
                time.sleep(min(float(r.headers.get("Retry-After") or 1), 10))


class Run:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.stopping = False       # everything stops
        self.senders_stop = False   # senders stop after their current message
        self.logged = {}            # convo -> its MessageCreated in chat.events, at quiet
        self.sends = []     # every send: dict(cmid, convo, sender, content, status, seq, smid,
                            # attempts, t_first, t_ack, rejected)
        self.ack_times = []  # monotonic times of every ok/duplicate ack
        self.faults = []
        self.rest_seen = []  # (convo, seq_no, server_msg_id) read by REST during the run
        self.rest_ok = self.rest_failed = 0

    # -- set-up --
    def setup(self):
        self.users = [User(i) for i in range(self.args.users)]
        by = {u.id: u for u in self.users}
        convos = []
        for i in range(0, len(self.users) - 1, 2):  # 1:1 pairs
            convos.append([self.users[i], self.users[i + 1]])
        for g in range(max(1, len(self.users) // 4)):  # groups of 4
            convos.append(self.rng.sample(self.users, min(4, len(self.users))))
        self.convos = {}
        for members in convos:
            r = members[0].api.post("/conversations", {
                "title": "chaos", "members": [m.id for m in members[1:]]})
            assert r.status == 201, r
            cid = r.json["id"]
            self.convos[cid] = [m.id for m in members]
            for m in members:
                m.convos.append(cid)
        self.by = by
        self.devices = [Device(self, u, k) for u in self.users for k in range(2)]

    # -- senders --
    async def sender(self, user):
        n = 0
        devs = [d for d in self.devices if d.user is user]
        while not self.senders_stop:
            if not user.convos:
                return
            convo = self.rng.choice(user.convos)
            n += 1
            s = {"cmid": f"{user.api.name}-{n}", "convo": convo, "sender": user.id,
                 "content": f"m{n} of {user.api.name}", "status": None, "attempts": 0,
                 "t_first": now()}
            self.sends.append(s)
            frame = {"type": "message.send", "convo_id": convo, "client_msg_id": s["cmid"],
                     "content": s["content"]}
            while s["status"] is None and now() - s["t_first"] < SEND_DEADLINE:
                dev = devs[s["attempts"] % len(devs)]
                s["attempts"] += 1
                try:
                    ack = await dev.send(frame)
                except (ConnectionError, asyncio.TimeoutError, websockets.WebSocketException):
                    await asyncio.sleep(0.2)
                    continue
                if ack.get("status") in ("ok", "duplicate"):
                    s.update(status=ack["status"], seq=ack["seq_no"], smid=ack["server_msg_id"],
                             t_ack=now())
                    self.ack_times.append(s["t_ack"])
                elif ack.get("status") == "error":
                    code = (ack.get("error") or {}).get("code")
                    if code in ("unavailable", "timeout", "overloaded", "rate_limited"):
                        await asyncio.sleep(0.5)  # retryable: same client_msg_id again
                        continue
                    s.update(status="error", error=code, t_ack=now())
            if s["status"] is None:
                s["status"] = "unacked"
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    # -- REST readers: what history shows while faults happen must never change later --
    async def rest_reader(self):
        while not self.senders_stop:
            convo = self.rng.choice(list(self.convos))
            reader = self.by[self.convos[convo][0]]
            top = max([s["seq"] for s in self.sends[-200:]
                       if s["convo"] == convo and s.get("seq")] or [0])
            try:
                r = await asyncio.to_thread(
                    reader.api.get, f"/conversations/{convo}/messages?since_seq="
                    f"{max(0, top - 50)}&limit=100", timeout=5)
            except OSError:
                r = None
            if r is not None and r.status == 200:
                self.rest_ok += 1
                for m in r.json["messages"]:
                    self.rest_seen.append((convo, m["seq_no"], m["server_msg_id"]))
            elif r is not None and r.status == 401:
                await asyncio.to_thread(reader.login)
            else:
                self.rest_failed += 1
            await asyncio.sleep(0.3)

    # -- faults --
    def schedule(self):
        daemons = instance_names(NGATEWAYS)
        kinds = ([("kill", d) for d in daemons] + [("pause", d) for d in daemons] +
                 [("kill", "kafka"), ("pause", "kafka"), ("restart", "postgres"),
                  ("restart", "redis"), ("flush", "redis")])
        if len(broker_pids()) > 1:
            kinds += [("kill", "events-leader"), ("pause", "events-leader"),
                      ("kill", "controller"), ("pause", "controller")]
        if can_partition():
            kinds += [("partition", "kafka")]
        if self.args.only:
            want = set(self.args.only.split(","))
            kinds = [k for k in kinds if k[0] in want or f"{k[0]}:{k[1]}" in want]
            if not kinds:
                raise SystemExit(f"--only {self.args.only}: no such fault here")
        plan, t = [], 5.0
        span = self.args.duration - 10.0
        gap = max(span / max(self.args.faults, 1), 8.0)
        for i in range(self.args.faults):
            if i % 4 == 3:  # every fourth: two at once
                a, b = self.rng.sample(kinds, 2)
                plan.append({"at": round(t, 1), "faults": [list(a), list(b)],
                             "pause_s": round(self.rng.uniform(2, 6), 1)})
            else:
                plan.append({"at": round(t, 1), "faults": [list(self.rng.choice(kinds))],
                             "pause_s": round(self.rng.uniform(2, 6), 1)})
            t += gap
        return plan

    async def injector(self, plan, t0):
        for step in plan:
            await asyncio.sleep(max(0.0, t0 + step["at"] - now()))
            if self.stopping:
                break
            start = now()
            outcome = await asyncio.gather(
                *(asyncio.to_thread(inject, kind, target, step["pause_s"])
                  for kind, target in step["faults"]), return_exceptions=True)
            # A fault that could not be healed at once (a daemon not healthy while a broker
            # is paused, say) is noted; heal() brings everything back at the end.
            errors = [str(e) for e in outcome if isinstance(e, Exception)]
            details = [o for o in outcome if isinstance(o, dict)]
            self.faults.append({**step, "t_start": round(start - t0, 1),
                                "t_healed": round(now() - t0, 1), "errors": errors,
                                "details": details,
                                "_start": start, "_end": now()})

    # -- after healing --
    async def quiesce(self):
        await asyncio.to_thread(heal)
        for d in self.devices:
            await asyncio.wait_for(d.connected.wait(), 60)
        # Quiet: every command processed (sends never acked may still be committed, late),
        # history holding every message of chat.events, then one more sync of everything on
        # every device.
        await asyncio.to_thread(wait_processed)
        self.logged = await asyncio.to_thread(self.read_events)
        await asyncio.to_thread(self.wait_converged,
                                {c: len(e) for c, e in self.logged.items()})
        for d in self.devices:
            await d.sync_all()
        deadline = now() + 60
        while now() < deadline and not self.devices_complete():
            await asyncio.sleep(0.5)

    def history(self, convo, owner):
        msgs, since = [], 0
        while True:
            r = owner.api.get(f"/conversations/{convo}/messages?since_seq={since}&limit=200")
            if r.status == 401:
                owner.login()
                continue
            assert r.status == 200, r
            msgs += r.json["messages"]
            if not r.json.get("next_cursor"):
                return msgs
            since = msgs[-1]["seq_no"]

    def read_events(self):
        """The MessageCreated of chat.events of each conversation of the run."""
        events = {}
        for _, v in read_to_end(ENV["KCHAT_KAFKA_BROKERS"], "chat.events",
                                lambda k, v, m: k.decode() in self.convos):
            name, f = body(v)
            if name == "MessageCreated":
                events.setdefault(v["convo_id"], []).append(f)
        return events

    def wait_converged(self, logged):
        """History of every conversation once it holds as many messages as chat.events has
        MessageCreated for it (a model being rebuilt gets there later: a Redis restart empties
        the Redis model, and the projector replays the topic into it before Postgres gets its
        next batch), or as it stands after three minutes."""
        deadline = now() + 180
        while True:
            hist = {c: self.history(c, self.by[m[0]]) for c, m in self.convos.items()}
            if all(len(hist[c]) >= logged.get(c, 0) for c in hist) or now() > deadline:
                return hist
            time.sleep(1)

    def devices_complete(self):
        tops = {c: len(e) for c, e in self.logged.items()}
        for s in self.sends:
            if s["status"] in ("ok", "duplicate"):
                tops[s["convo"]] = max(tops.get(s["convo"], 0), s["seq"])
        return all(d.have_upto(c) >= tops.get(c, 0) for d in self.devices for c in d.user.convos)

    # -- the checker --
    def check(self):
        problems = []
        acked = [s for s in self.sends if s["status"] in ("ok", "duplicate")]
        unacked = [s for s in self.sends if s["status"] == "unacked"]
        rejected = [s for s in self.sends if s["status"] == "error"]
        # chat.events as it stood at quiet, and the models after it
        events = self.logged
        hist = {c: self.history(c, self.by[m[0]]) for c, m in self.convos.items()}
        recent = redis_recent(self.convos)
        lost = dup = reordered = 0
        for c, msgs in hist.items():
            seqs = [m["seq_no"] for m in msgs]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{c}: history seq_no not gap-free: {seqs[:20]}...")
            eseqs = sorted(e["seq_no"] for e in events.get(c, []))
            if eseqs != list(range(1, len(eseqs) + 1)) or len(eseqs) != len(seqs):
                problems.append(f"{c}: chat.events has seq_nos {eseqs[:20]}..., history "
                                f"{len(seqs)}")
        by_cmid = {}
        for c, msgs in hist.items():
            for m in msgs:
                by_cmid.setdefault((c, m["sender_id"], m["client_msg_id"]), []).append(m)
        for s in acked:
            got = by_cmid.get((s["convo"], s["sender"], s["cmid"]), [])
            if not got:
                lost += 1
                problems.append(f"acked {s['cmid']} (seq {s['seq']}) missing from history")
            elif len(got) > 1:
                dup += 1
                problems.append(f"acked {s['cmid']} {len(got)} times in history")
            elif got[0]["seq_no"] != s["seq"] or got[0]["server_msg_id"] != s["smid"] or \
                    got[0]["content"] != s["content"]:
                problems.append(f"acked {s['cmid']}: history {got[0]} differs from its ack")
            ev = [e for e in events.get(s["convo"], []) if e["client_msg_id"] == s["cmid"]]
            if len(ev) != 1:
                problems.append(f"acked {s['cmid']}: {len(ev)} MessageCreated in chat.events")
            rec = recent.get(s["convo"])
            if rec is not None and s["seq"] in rec and rec[s["seq"]] != s["smid"]:
                problems.append(f"acked {s['cmid']}: Redis recent holds another message at "
                                f"seq {s['seq']}")
        for c, rec in recent.items():
            tops = [m["seq_no"] for m in hist[c]][-len(rec):] if rec else []
            if rec and sorted(rec) != tops:
                problems.append(f"{c}: Redis recent seq_nos {sorted(rec)[:10]}... are not the "
                                f"newest of history {tops[:10]}...")
        for s in unacked:
            got = by_cmid.get((s["convo"], s["sender"], s["cmid"]), [])
            if len(got) > 1:
                dup += 1
                problems.append(f"unacked {s['cmid']} {len(got)} times in history")
        for s in rejected:
            if by_cmid.get((s["convo"], s["sender"], s["cmid"])):
                problems.append(f"rejected {s['cmid']} ({s.get('error')}) is in history")
        # Each sender's messages in the order they were acked (sends are sequential per user).
        per_sender = {}
        for s in sorted(acked, key=lambda s: s["t_ack"]):
            per_sender.setdefault((s["sender"], s["convo"]), []).append(s["seq"])
        for key, seqs in per_sender.items():
            if seqs != sorted(seqs):
                reordered += 1
                problems.append(f"{key}: acked in the order {seqs} of seq_no")
        # Devices: every message, one server_msg_id per seq_no.
        smid = {(c, m["seq_no"]): m["server_msg_id"] for c, ms in hist.items() for m in ms}
        missing = 0
        for d in self.devices:
            for c in d.user.convos:
                have = d.got.get(c, {})
                for seq in range(1, len(hist[c]) + 1):
                    ids = have.get(seq)
                    if not ids:
                        missing += 1
                    elif ids != {smid[(c, seq)]}:
                        problems.append(f"device {d.user.api.name}/{d.index}: {c} seq {seq} "
                                        f"as {sorted(ids)}, history says {smid[(c, seq)]}")
        if missing:
            problems.append(f"{missing} (device, message) pairs never delivered, live or by sync")
        changed = {(c, q, m) for c, q, m in self.rest_seen if smid.get((c, q)) != m}
        if changed:
            problems.append(f"{len(changed)} messages read by REST during the run differ from "
                            f"the final history, e.g. {sorted(changed)[:3]}")
        return problems, {"sent": len(self.sends), "acked": len(acked),
                          "unacked": len(unacked), "rejected": len(rejected), "lost": lost,
                          "duplicated": dup, "reordered": reordered,
                          "undelivered": missing, "rest_reads": self.rest_ok,
                          "rest_failures": self.rest_failed,
                          "frames_per_delivery": round(
                              sum(d.frames for d in self.devices) /
                              max(1, sum(len(hist[c]) for d in self.devices
                                         for c in d.user.convos)), 2),
                          "reconnects": sum(d.reconnects for d in self.devices),
                          "conversations": len(self.convos), "users": len(self.users)}

    def unavailability(self, f, next_start):
        """The longest time without any ack that overlaps the fault: from its start to 30 s
        after it healed, or to the next fault's start if that comes first."""
        times = sorted(self.ack_times)
        lo, hi = f["_start"], min(f["_end"] + 30, next_start)
        prev, worst = None, 0.0
        for t in times:
            if prev is not None and t > lo and prev < hi:
                worst = max(worst, t - max(prev, lo))
            prev = t
        return round(worst, 2)

    async def main(self):
        self.setup()
        plan = self.schedule()
        tasks = [asyncio.create_task(d.loop()) for d in self.devices]
        for d in self.devices:
            await asyncio.wait_for(d.connected.wait(), 30)
        t0 = now()
        senders = [asyncio.create_task(self.sender(u)) for u in self.users]
        senders.append(asyncio.create_task(self.rest_reader()))
        inj = asyncio.create_task(self.injector(plan, t0))
        await asyncio.sleep(self.args.duration)
        await inj
        self.senders_stop = True
        await asyncio.gather(*senders)
        await self.quiesce()
        problems, counts = self.check()
        self.stopping = True
        for d in self.devices:
            if d.ws:
                await d.ws.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        for i, f in enumerate(self.faults):
            nxt = self.faults[i + 1]["_start"] if i + 1 < len(self.faults) else float("inf")
            f["longest_without_ack_s"] = self.unavailability(f, nxt)
        return plan, problems, counts


# ---- faults on processes ----

def pid_of(name):
    p = STATE / "run" / f"{name}.pid"
    return int(p.read_text()) if p.exists() else None


def broker_pids():
    return [int(p.read_text()) for p in sorted((STATE / "kafka").rglob("kafka.pid"))
            if p.read_text().strip().isdigit()]


def sh(*cmd, timeout=300):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-1000:]}")
    return r.stdout


def signal_pids(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def node_pid(node):
    for p in sorted((STATE / "kafka").rglob("kafka.pid")):
        if p.parent.name == f"node{node}" or (node == 1 and p.parent.name == "kafka"):
            return int(p.read_text())
    return None


def events_leader_pid():
    """The broker pid leading partition 0 of chat.events (several brokers only)."""
    from confluent_kafka.admin import AdminClient
    md = AdminClient({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"]}).list_topics(
        "chat.events", timeout=10)
    return node_pid(md.topics["chat.events"].partitions[0].leader)


def controller_pid():
    """The pid of the active controller (the quorum's leader), as Kafka's own tool says."""
    out = sh(str(ROOT / "scripts" / "kafka.sh"), "run-class",
             "org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server",
             ENV["KCHAT_KAFKA_BROKERS"].split(",")[0], "describe", "--status")
    for line in out.splitlines():
        if line.strip().startswith("LeaderId:"):
            return node_pid(int(line.split(":", 1)[1]))
    return None


def can_partition():
    """Network partitions only inside the network namespace scripts/chaos.sh makes for the
    stack (iptables there touches nothing else), as root."""
    return ENV.get("KCHAT_CHAOS_NETNS") == "1" and os.geteuid() == 0 and \
        shutil.which("iptables") is not None


def broker_ports():
    """[(node number, [its listener ports])] from each broker's rendered server.properties."""
    out = []
    for props in sorted((STATE / "kafka").rglob("server.properties")):
        node = int(props.parent.name[4:]) if props.parent.name.startswith("node") else 1
        for line in props.read_text().splitlines():
            if line.startswith("listeners="):
                ports = [int(x.rsplit(":", 1)[1]) for x in line.split("=", 1)[1].split(",")]
                out.append((node, ports))
    return out


def node_cgroup(node):
    """The broker's cgroup, as iptables' cgroup match names it (relative to the cgroup v2
    root), when scripts/chaos.sh started the brokers in cgroups of their own."""
    cg, root = ENV.get("KCHAT_KAFKA_CGROUP"), ENV.get("KCHAT_KAFKA_CGROUP_ROOT")
    if not cg or not root:
        return None
    return os.path.relpath(os.path.join(cg, f"node{node}"), root)


def iptables(op, node, ports):
    """Everything to the node's listeners dropped, and everything it sends: from its
    listeners by port, and, with its cgroup, from every socket it has (its own connections
    to the other brokers and controllers included)."""
    spec = ",".join(str(p) for p in ports)
    for way in ("--dports", "--sports"):
        sh("iptables", op, "INPUT", "-p", "tcp", "-m", "multiport", way, spec, "-j", "DROP")
    cg = node_cgroup(node)
    if cg:
        sh("iptables", op, "OUTPUT", "-m", "cgroup", "--path", cg, "-j", "DROP")


def inject(kind, target, pause_s):
    if kind == "partition":
        # One broker cut off: nothing reaches its listeners and nothing it sends arrives
        # (clients, the other brokers, the controllers). Without a cgroup per broker (see
        # scripts/chaos.sh) only what its listeners send is dropped: its own connections
        # stay, the asymmetric partition that leaves a leader thinking it is fine.
        brokers = broker_ports()
        node, ports = brokers[random.Random(pause_s).randrange(len(brokers))]
        iptables("-I", node, ports)
        try:
            time.sleep(pause_s * 2)
            # What the rules dropped, as evidence that the cut held: packets per chain.
            dropped = {chain: sum(int(line.split()[0]) for line in
                                  sh("iptables", "-L", chain, "-v", "-x", "-n").splitlines()[2:]
                                  if line.split() and "DROP" in line)
                       for chain in ("INPUT", "OUTPUT")}
        finally:
            iptables("-D", node, ports)
        return {"node": node, "full": node_cgroup(node) is not None,
                "dropped_packets": dropped}
    if target in ("kafka", "events-leader", "controller"):
        pids = (broker_pids() if target == "kafka" else
                [events_leader_pid()] if target == "events-leader" else [controller_pid()])
        pids = [p for p in pids if p]
        if kind == "kill":
            signal_pids(pids[:1] if target == "kafka" and len(pids) > 1 else pids,
                        signal.SIGKILL)
            time.sleep(pause_s)
            sh(str(ROOT / "scripts" / "kafka.sh"), "start")
        else:
            signal_pids(pids, signal.SIGSTOP)
            time.sleep(pause_s)
            signal_pids(pids, signal.SIGCONT)
    elif target == "postgres":
        sh(str(ROOT / "scripts" / "pg.sh"), "stop")
        time.sleep(pause_s)
        sh(str(ROOT / "scripts" / "pg.sh"), "start")
    elif target == "redis":
        if kind == "flush":
            redislib.Redis(host="127.0.0.1", port=int(ENV["KCHAT_REDIS_PORT"])).flushall()
        else:
            pid = int((STATE / "redis" / "redis.pid").read_text())
            signal_pids([pid], signal.SIGKILL)
            time.sleep(pause_s)
            sh(str(ROOT / "scripts" / "redis.sh"), "start")
    elif kind == "kill":
        sh(STACK, "kill", target)
    else:
        pid = pid_of(target)
        signal_pids([pid], signal.SIGSTOP)
        time.sleep(pause_s)
        signal_pids([pid], signal.SIGCONT)


def heal():
    """Every process running and healthy again: nothing left stopped, then `stack.sh up`
    starts whatever is not running (brokers, stores, daemons) and waits for every /health."""
    if can_partition():
        sh("iptables", "-F", "INPUT")
        sh("iptables", "-F", "OUTPUT")
    signal_pids(broker_pids(), signal.SIGCONT)
    for name in instance_names(NGATEWAYS):
        pid = pid_of(name)
        if pid:
            signal_pids([pid], signal.SIGCONT)
    sh(STACK, "up")


def wait_processed(timeout=180.0):
    """Until the processor has committed (with the events they made) the offsets of every
    command on chat.commands: from then on chat.events holds whatever the run's sends made.
    Gives up after `timeout`; the checker then reports what is missing."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    c = Consumer({"bootstrap.servers": ENV["KCHAT_KAFKA_BROKERS"],
                  "group.id": "kchat-processor", "enable.auto.commit": False})
    try:
        parts = list(c.list_topics("chat.commands", timeout=10).topics["chat.commands"]
                     .partitions)
        deadline = now() + timeout
        while now() < deadline:
            # Just after the heal the group's coordinator may still be loading its offsets,
            # or a broker still be coming back: a request that times out is asked again.
            try:
                ends = {p: c.get_watermark_offsets(TopicPartition("chat.commands", p),
                                                   timeout=10)[1] for p in parts}
                done = c.committed([TopicPartition("chat.commands", p) for p in parts],
                                   timeout=10)
            except KafkaException as e:
                if not e.args[0].retriable() and e.args[0].code() != KafkaError._TIMED_OUT:
                    raise
                time.sleep(0.5)
                continue
            if all(ends[tp.partition] == 0 or tp.offset >= ends[tp.partition] for tp in done):
                return
            time.sleep(0.5)
    finally:
        c.close()


def redis_recent(convos):
    """{convo: {seq_no: server_msg_id}} of the Redis model's recent messages."""
    r = redislib.Redis(host="127.0.0.1", port=int(ENV["KCHAT_REDIS_PORT"]),
                       decode_responses=True)
    gen = r.get("kchat:rm:gen")
    out = {}
    if not gen:
        return out
    for c in convos:
        z = r.zrange(f"kchat:rm:{gen}:recent:{c}", 0, -1, withscores=True)
        out[c] = {int(s): json.loads(m).get("server_msg_id") for m, s in z}
    return out


def report(args, plan, problems, counts, faults, out_dir):
    rep = {"seed": args.seed, "duration_s": args.duration, "schedule": plan,
           "faults": [{k: v for k, v in f.items() if not k.startswith("_")} for f in faults],
           "counts": counts, "problems": problems, "ok": not problems}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=2))
    lines = [f"kchat fault run: seed {args.seed}, {args.duration:.0f} s, "
             f"{len(faults)} fault steps",
             "counts: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    for f in rep["faults"]:
        what = " + ".join(f"{k} {t}" for k, t in f["faults"])
        lines.append(f"  at {f['t_start']:6.1f} s  {what:40s}  healed at {f['t_healed']:6.1f} s"
                     f"  longest without an ack {f['longest_without_ack_s']} s"
                     + "".join(f"  [{json.dumps(d)}]" for d in f.get("details", []))
                     + "".join(f"  error: {e[:200]}" for e in f.get("errors", [])))
    lines.append("problems: none" if not problems else f"problems ({len(problems)}):")
    lines += [f"  {p}" for p in problems[:50]]
    lines.append(f"replay: tests/chaos/kchat_chaos.py --seed {args.seed} "
                 f"--duration {args.duration:.0f} --users {args.users} --faults {args.faults}"
                 + (f" --only {args.only}" if args.only else ""))
    (out_dir / "report.txt").write_text("\n".join(lines) + "\n")
    return rep, "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--duration", type=float, default=300.0, help="seconds of load with faults")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--faults", type=int, default=12, help="fault steps in the schedule")
    p.add_argument("--only", default="",
                   help="only these faults, comma-separated: a kind (kill, pause, restart, "
                        "flush, partition) or kind:target (kill:kafka, pause:processor)")
    p.add_argument("--report", type=Path, default=STATE / "chaos")
    return p.parse_args(argv)


def run(args):
    r = Run(args)
    plan, problems, counts = asyncio.run(r.main())
    return report(args, plan, problems, counts, r.faults, args.report)


if __name__ == "__main__":
    a = parse()
    rep, text = run(a)
    print(text)
    sys.exit(0 if rep["ok"] else 1)
