#!/usr/bin/env python3
"""The benchmark scenarios, as named presets, against a running stack (scripts/stack.sh up with
the same environment; bench/run.sh starts and stops one):

  kafka      Kafka alone: kchat-kafka-alone at the size of a chat.events record
  one2one    1:1 conversations through the gateways (kchat-loadgen), with the Kafka records
             and the broker's requests each message costs (topic offsets and the broker's
             JMX request counters before/after) and CPU per delivered message of every
             process of the stack (/proc/<pid>/stat before/after)
  groups     groups of 50, the same figures
  ramp       1:1 at rising rates until kchat no longer keeps up: the highest sustained rate
             (the ratio to Kafka alone) and the p99 at each step
  idle       idle connections: the gateways' RSS and the kernel's memory (Slab, /proc/meminfo)
             per connection
  history    history reads against the API with wrk (skipped when wrk is not installed)
  replay     kchat-projector --rebuild: events per second into Postgres
  peers      kchat, Centrifugo and Socket.IO with the same load generator: memory per idle
             connection, latency and deliveries per CPU second (servers alone and with the
             Redis server each uses) at the same 1:1 rate, throughput at equal p99
             (bench/peers/setup.sh installs the peers into ~/.cache/kchat-bench first)
  txn        only when named: the processor restarted with each of --producers 1/2 and
             --fetch-wait-ms 10/18/25, 1:1 at 2 000 msg/s: ack latency, transactions/s
             and the mean commit time of each setting

  bench/run.py [--short] [--only NAME[,NAME...]] [--kchat-only] [--warmup SECONDS]
               [--name NAME] [--baseline-results FILE] [--out results.json]

Every scenario's figures go into one JSON file (default $KCHAT_STATE_DIR/bench-results.json,
outside the repository) and a Markdown summary on stdout, ending with kchat / each peer and,
given a baseline's results, baseline vs this run. Load goes only to 127.0.0.1. Exit status 1
when a scenario errored or a load generator check failed (see failures), never because of a
timing or a ratio.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the harness: this file's tree
sys.path.insert(0, str(ROOT / "pylib"))
from kchat_testkit.metrics import samples, scrape  # noqa: E402
from kchat_testkit.stack import gateway_addresses, instance_names  # noqa: E402

ENV = os.environ
# The tree whose stack runs (its scripts, schemas and daemons): this one, or the baseline's
# (bench/run.sh --baseline). The load generator and kchat-kafka-alone are the harness's.
STACK_ROOT = Path(ENV.get("KCHAT_ROOT", ROOT))
BUILD = Path(ENV.get("KCHAT_BUILD_DIR", STACK_ROOT / "build"))
TOOLS = Path(ENV.get("KCHAT_BENCH_BUILD_DIR", BUILD))
SCHEMAS = STACK_ROOT / "schemas"
LOADGEN = TOOLS / "bench" / "loadgen" / "kchat-loadgen"
KAFKA_ALONE = TOOLS / "bench" / "kafka" / "kchat-kafka-alone"
STATE = Path(ENV["KCHAT_STATE_DIR"])
BASE = int(ENV["KCHAT_PORT_BASE"])


def stack_gateways():
    """How many gateways the stack's own scripts/stack.sh runs (KCHAT_GATEWAYS, or that
    tree's default: a baseline's may differ from this tree's)."""
    r = subprocess.run([str(STACK_ROOT / "scripts" / "stack.sh"), "daemons"], env=ENV,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        sys.exit(f"bench: {STACK_ROOT}/scripts/stack.sh daemons failed: {r.stderr.strip()}")
    n = sum(1 for line in r.stdout.splitlines() if re.match(r"gateway[0-9]*\t", line))
    if n < 1:
        sys.exit(f"bench: {STACK_ROOT}/scripts/stack.sh runs no gateway")
    return n


NGW = stack_gateways()
BROKERS = ENV["KCHAT_KAFKA_BROKERS"]
# the daemons' instances of scripts/daemons.json, the gateways last (the summary's columns)
DAEMONS = sorted(instance_names(NGW), key=lambda d: d.startswith("gateway"))
# kchat's own processes as the earlier figures counted them ("all of kchat"): its daemons
# and the broker. The whole stack adds Postgres, Redis, MinIO and the ingress.
KCHAT_AND_BROKER = DAEMONS + ["kafka"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
JMX_PORT = ENV.get("KCHAT_KAFKA_JMX_PORT")
# The broker's request kinds of a transaction, and those of the KRaft controller (the
# broker's own heartbeats and registration: no client's work, left out of the total).
TXN_REQUESTS = ("InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn", "TxnOffsetCommit",
                "EndTxn", "WriteTxnMarkers")
CONTROLLER_REQUESTS = {"BrokerHeartbeat", "BrokerRegistration", "ControllerRegistration",
                       "UnregisterBroker", "AllocateProducerIds", "AlterPartition", "Vote",
                       "BeginQuorumEpoch", "EndQuorumEpoch", "DescribeQuorum", "FetchSnapshot",
                       "AddRaftVoter", "RemoveRaftVoter", "UpdateRaftVoter",
                       "AssignReplicasToDirs"}
# The request kinds the summary shows one by one (all of them are in the JSON).
SHOWN_REQUESTS = ("Produce", "Fetch", "FetchConsumer") + TXN_REQUESTS + (
    "Metadata", "Heartbeat", "OffsetCommit")

CACHE = Path(ENV.get("KCHAT_BENCH_CACHE", Path.home() / ".cache" / "kchat-bench"))



def pid_of(name):
    try:
        pid = int((STATE / "run" / f"{name}.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def pid_in(path):
    """The live pid named on the first line of a pid file, or None."""
    try:
        pid = int(Path(path).read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def status_kib(pid, key="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def meminfo():
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0])
    return out


def tcp_mem_pages():
    """Pages the kernel holds for TCP socket buffers (/proc/net/sockstat, TCP ... mem N)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1])
    return 0


def kafka_pid():
    p = STATE / "kafka" / "kafka.pid"
    if p.exists():
        try:
            return int(p.read_text().strip())
        except ValueError:
            return None
    r = subprocess.run(["pgrep", "-f", f"{STATE}/kafka"], capture_output=True, text=True)
    pids = [int(x) for x in r.stdout.split()]
    return pids[0] if pids else None


def proc_table():
    """Every process's parent and CPU seconds from /proc/<pid>/stat: {pid: (ppid, own,
    reaped)}, own = utime + stime, reaped = cutime + cstime (what the children it has waited
    for used)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        out[int(d)] = (int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK,
                       (int(f[13]) + int(f[14])) / CLK_TCK)
    return out


def tree_cpu(table, kids, root):
    """CPU seconds of a process and every descendant alive, plus what the descendants already
    gone used (a process's CPU passes to its parent's cutime/cstime when the parent waits for
    it: the postmaster for its backends, nginx's master for its workers), so a child that
    came and went between two readings counts too. Returns (seconds, processes alive)."""
    total, n, todo = 0.0, 0, [root]
    while todo:
        pid = todo.pop()
        _, own, reaped = table[pid]
        total += own + reaped
        n += 1
        todo += kids.get(pid, [])
    return total, n


def stack_roots(extra=None):
    """The stack's processes by name, each the root of its tree: the daemons, the broker, the
    postmaster of this stack's data directory (its backends are its children), Redis, MinIO
    and the ingress's master (workers are its children), when they run; extra adds more
    (a peer server)."""
    roots = {d: p for d in DAEMONS if (p := pid_of(d))}
    files = {"postgres": STATE / "pg" / "data" / "postmaster.pid",
             "redis": STATE / "redis" / "redis.pid", "minio": STATE / "minio" / "minio.pid",
             "nginx": STATE / "nginx" / "nginx.pid"}
    if (kp := kafka_pid()):
        roots["kafka"] = kp
    roots.update({n: p for n, f in files.items() if (p := pid_in(f))})
    roots.update(extra or {})
    return roots


def cpu_snapshot(extra=None):
    """CPU seconds so far of every process of the stack by name (stack_roots), each with its
    root pid and how many processes its tree holds now."""
    table = proc_table()
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    snap = {}
    for name, pid in stack_roots(extra).items():
        if pid in table:
            sec, n = tree_cpu(table, kids, pid)
            snap[name] = {"pid": pid, "cpu_s": sec, "processes": n}
    return snap


def cpu_delta(snap0, snap1):
    """CPU seconds each process tree used between two snapshots (a name whose root process
    changed meanwhile, a restarted daemon, is left out)."""
    return {n: snap1[n]["cpu_s"] - snap0[n]["cpu_s"] for n in snap1
            if n in snap0 and snap0[n]["pid"] == snap1[n]["pid"]}


def cpu_figures(snap0, snap1, deliveries):
    """CPU of every process of the stack between two snapshots: seconds and µs per delivered
    message by process (Postgres and the ingress: their whole process trees), the total and
    deliveries per CPU second on it, and the same for kchat's daemons and the broker alone
    (what the earlier figures called all of kchat)."""
    used = cpu_delta(snap0, snap1)
    total = sum(used.values())
    kchat = sum(v for n, v in used.items() if n in KCHAT_AND_BROKER)
    per = max(deliveries, 1)
    return {"cpu_seconds": {n: round(v, 3) for n, v in used.items()},
            "cpu_us_per_delivery": {n: round(v * 1e6 / per, 1) for n, v in used.items()},
            "cpu_processes": {n: [snap0[n]["processes"], snap1[n]["processes"]] for n in used},
            "cpu_seconds_total": round(total, 3),
            "cpu_us_per_delivery_total": round(total * 1e6 / per, 1),
            "deliveries_per_cpu_second": round(deliveries / total) if total > 0 else 0,
            "cpu_seconds_kchat_and_broker": round(kchat, 3),
            "deliveries_per_cpu_second_kchat_and_broker":
                round(deliveries / kchat) if kchat > 0 else 0}


def broker_requests():
    """The broker's request counters by request kind: kafka.network:type=RequestMetrics,
    name=RequestsPerSec,request=<kind> Count, summed over the request versions, read over JMX
    (KCHAT_KAFKA_JMX_PORT) by Kafka's JmxTool. The tool is a JVM of its own taking about a
    second to start: call it outside a measured window. None when the broker has no JMX."""
    if not JMX_PORT:
        return None
    r = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "run-class",
                        "org.apache.kafka.tools.JmxTool",
                        f"--jmx-url=service:jmx:rmi:///jndi/rmi://127.0.0.1:{JMX_PORT}/jmxrmi",
                        "--object-name=kafka.network:type=RequestMetrics,name=RequestsPerSec,*",
                        "--attributes=Count", "--one-time=true", "--report-format=properties"],
                       capture_output=True, text=True, timeout=120)
    counts = {}
    for line in r.stdout.splitlines():
        m = re.search(r"[:,]request=([A-Za-z]+)(?:,[^:]*)?:Count=(\d+)", line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
    if r.returncode != 0 or not counts:
        out = (r.stdout + r.stderr).splitlines()
        why = next((ln for ln in out if "Exception" in ln or "rror" in ln), "\n".join(out[-5:]))
        raise RuntimeError(f"JmxTool on 127.0.0.1:{JMX_PORT}: {why[:400]}")
    return counts


def read_requests(errors):
    """broker_requests, or None with the reason added to errors."""
    try:
        return broker_requests()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        errors.append(str(e))
        return None


def request_figures(req0, req1, messages):
    """The broker's requests between two readings of broker_requests, by kind and per chat
    message: produce, fetch (consumers' fetches: FetchConsumer when the broker counts it
    apart), transactional (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
    TxnOffsetCommit, EndTxn, WriteTxnMarkers) and the total of every client request kind (the
    controller's own requests and the follower fetches left out)."""
    if req0 is None or req1 is None:
        why = "" if JMX_PORT else ": the broker has no JMX (KCHAT_KAFKA_JMX_PORT)"
        return {"kafka_requests": None, "kafka_requests_note": "not measured" + why}
    d = {k: v - req0.get(k, 0) for k, v in req1.items() if v - req0.get(k, 0) > 0}
    fetch = d.get("FetchConsumer", 0) if "FetchConsumer" in req1 else d.get("Fetch", 0)
    clients = sum(v for k, v in d.items() if k not in CONTROLLER_REQUESTS and
                  k not in ("Fetch", "FetchConsumer", "FetchFollower")) + fetch
    per = max(messages, 1)
    groups = {"produce": d.get("Produce", 0), "fetch": fetch,
              "transactional": sum(d.get(k, 0) for k in TXN_REQUESTS), "total": clients}
    return {"kafka_requests": d,
            "kafka_requests_per_message": {
                **{k: round(v / per, 3) for k, v in groups.items()},
                "by_kind": {k: round(d.get(k, 0) / per, 3) for k in SHOWN_REQUESTS
                            if k in req1}}}


def topic_records():
    """Sum of the high watermarks of every kchat topic (records incl. transaction markers)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bench-offsets"})
    try:
        md = c.list_topics(timeout=10)
        out = {}
        for name, t in md.topics.items():
            if name.startswith("bench.") or (name.startswith("__") and
                                             name not in ("__consumer_offsets",
                                                          "__transaction_state")):
                continue
            total = 0
            for p in t.partitions:
                _, hi = c.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                total += hi
            out[name] = total
        return out
    finally:
        c.close()


def gateways_arg():
    return gateway_addresses(NGW)


def run_loadgen(label, args, timeout=600, servers=None):
    """One kchat-loadgen run (servers: a peer's host:port; None: kchat's gateways)."""
    out = STATE / f"loadgen-{label}.json"
    cmd = [str(LOADGEN), f"--gateways={servers or gateways_arg()}", f"--brokers={BROKERS}",
           f"--jwt-key={ENV['KCHAT_JWT_PRIVATE_KEY']}", f"--schemas-dir={SCHEMAS}",
           f"--label={label}", f"--out={out}", *args]
    if servers is None:  # kchat: wait for the gateways' routes before sending
        cmd.append(f"--redis=127.0.0.1:{ENV['KCHAT_REDIS_PORT']}")
    print(f"$ {' '.join(cmd[0:1] + cmd[5:])}", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.exists():
        raise RuntimeError(f"loadgen {label} failed: {proc.stderr[-2000:]}")
    s = json.loads(out.read_text())
    s["exit_code"] = proc.returncode
    return s


def with_costs(label, args):
    """A loadgen run with what it cost measured around it: Kafka records (every topic's high
    watermarks), the broker's requests (its JMX counters, read just outside the CPU window so
    the reading tool's JVM is not in it) and the CPU of every process of the stack."""
    errors = []
    recs0 = topic_records()
    req0 = read_requests(errors)
    cpu0 = cpu_snapshot()
    s = run_loadgen(label, args)
    time.sleep(2)  # the projector and the offsets catch up
    cpu1 = cpu_snapshot()
    req1 = read_requests(errors)
    recs1 = topic_records()
    acked = max(s["results"]["acked"], 1)
    s["kafka_records"] = {t: recs1.get(t, 0) - recs0.get(t, 0) for t in recs1
                          if recs1.get(t, 0) - recs0.get(t, 0) > 0}
    s["kafka_records_per_message"] = sum(s["kafka_records"].values()) / acked
    s.update(request_figures(req0, req1, acked))
    if errors:
        s["kafka_requests_error"] = errors[0]
    s.update(cpu_figures(cpu0, cpu1, s["results"]["deliveries"]))
    return s


def warm_up(seconds, short):
    """Unmeasured 1:1 load (400 connections; 1 000 msg/s, 2 000 in the full version) for the
    given seconds, so that the measured scenarios find the broker's JIT warm (a comparison's
    two stacks both start from nothing). Only its check is kept."""
    rate = 1000 if short else 2000
    s = run_loadgen("warmup", ["--conns=400", "--group=2", f"--rate={rate}",
                               f"--duration-s={seconds}", "--size=100", "--drain-s=60"])
    return {"seconds": seconds, "rate": rate, "acked_per_s": round(s["results"]["acked_per_s"]),
            "check": s["check"]["pass"], "check_problems": check_problems(s),
            "integrity_problems": check_problems(s, integrity_only=True)}


def scenario_kafka(short):
    n = 50000 if short else 500000
    r = subprocess.run([str(KAFKA_ALONE), f"--brokers={BROKERS}", f"--records={n}",
                        "--size=300"], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return json.loads(r.stdout)


def scenario_one2one(short):
    conns, rate, dur = (200, 400, 10) if short else (2000, 2000, 30)
    return with_costs("one2one", [f"--conns={conns}", "--group=2", f"--rate={rate}",
                                  f"--duration-s={dur}", "--size=100", "--drain-s=60"])


def scenario_groups(short):
    conns, rate, dur = (500, 40, 10) if short else (2000, 100, 30)
    return with_costs("groups", [f"--conns={conns}", "--group=50", f"--rate={rate}",
                                 f"--duration-s={dur}", "--size=100", "--drain-s=60"])


# The check's counters that say a message was lost, doubled or misordered.
INTEGRITY = ("lost", "duplicates", "out_of_order", "duplicate_acks", "seq_conflicts",
             "conversations_with_seq_gaps", "conversations_not_starting_at_1",
             "acked_never_delivered")


def check_problems(s, integrity_only=False):
    """What a loadgen run's check found wrong, as "counter N" strings: with integrity_only
    only what says a message was lost, doubled or misordered; otherwise also messages never
    acked by the end of the drain, refused sends and acks, and connections that failed or
    closed (the rest of what the load generator's pass requires)."""
    c, r = s["check"], s["results"]
    found = [f"{k} {c[k]:.0f}" for k in INTEGRITY if c.get(k)]
    if integrity_only:
        return found
    found += [f"unacked {c['unacked']:.0f}"] if c.get("unacked") else []
    found += [f"{k} {r[k]:.0f}" for k in ("connections_failed", "connections_closed_early",
                                          "send_failed", "ack_errors") if r.get(k)]
    return found or ([] if c["pass"] else ["check failed"])


def ramp_steps(rates, dur, label="ramp", extra=(), servers=None):
    """1:1 with 400 connections at each rate in turn until one is not sustained."""
    steps = []
    for rate in rates:
        s = run_loadgen(f"{label}-{rate}", [*extra, "--conns=400", "--group=2", f"--rate={rate}",
                                            f"--duration-s={dur}", "--size=100", "--drain-s=60"],
                        servers=servers)
        r = s["results"]
        # acked/s counts to the last ack, so the latency tail lowers it on a short step
        ok = s["check"]["pass"] and r["acked_per_s"] >= 0.9 * rate
        steps.append({"rate": rate, "acked_per_s": round(r["acked_per_s"]),
                      "ack_p50_ms": r["ack_latency"]["p50_ms"],
                      "ack_p99_ms": r["ack_latency"]["p99_ms"],
                      "delivery_p99_ms": r["delivery_latency"]["p99_ms"],
                      "check": s["check"]["pass"], "check_problems": check_problems(s),
                      "integrity_problems": check_problems(s, integrity_only=True),
                      "sustained": ok})
        if not ok:
            break
    return steps


def best_rate(steps, p99_ms=None):
    """The highest sustained acked/s, with an ack p99 within p99_ms when given."""
    return max((st["acked_per_s"] for st in steps if st["sustained"] and
                (p99_ms is None or st["ack_p99_ms"] <= p99_ms)), default=0)


def scenario_ramp(short):
    """1:1 at rising target rates: the highest rate kchat sustains (acked/s within 10 % of the
    target, check passing) and the p99 at each step, for throughput at equal p99."""
    rates = [250, 500, 1000, 2000, 4000] if short else [250, 500, 1000, 2000, 4000, 8000, 16000]
    steps = ramp_steps(rates, 8 if short else 20)
    return {"steps": steps, "max_sustained_per_s": best_rate(steps)}


class Peer:
    ports = {"centrifugo": BASE + 130, "socketio": BASE + 131}
    """A peer server (Centrifugo or Socket.IO) started for the peers scenario, one node, on
    the stack's Redis; its log goes to the state folder."""

    def __init__(self, kind):
        # a port of the range may be in use as some connection's ephemeral port: try three
        for k in range(3):
            self.port = BASE + (130 if kind == "centrifugo" else 131) + 2 * k
            try:
                self.start(kind)
                Peer.ports[kind] = self.port
                return
            except RuntimeError as e:
                if "address already in use" not in str(e).lower() or k == 2:
                    raise

    def start(self, kind):
        self.kind = kind
        self.log = open(STATE / "logs" / f"peer-{kind}.log", "w")
        if kind == "centrifugo":
            cfg = STATE / "centrifugo.json"
            cfg.write_text(json.dumps({
                "client": {"token": {"rsa_public_key": Path(ENV["KCHAT_JWT_PUBLIC_KEY"]).read_text(),
                                     "audience": "kchat", "issuer": "kchat"},
                           "allowed_origins": ["*"]},
                "channel": {"without_namespace": {"allow_subscribe_for_client": True,
                                                  "allow_publish_for_client": True,
                                                  "history_size": 1000, "history_ttl": "600s"}},
                "engine": {"type": "redis", "redis": {
                    "address": [f"redis://127.0.0.1:{ENV['KCHAT_REDIS_PORT']}"]}},
                "http_server": {"address": "127.0.0.1", "port": self.port},
                "log": {"level": "error"}}))
            cmd = [str(CACHE / "bin" / "centrifugo"), "--config", str(cfg)]
            env = {"PATH": ENV["PATH"], "HOME": ENV.get("HOME", "/tmp")}
        else:
            cmd = ["node", str(ROOT / "bench" / "peers" / "socketio-server.js"), str(self.port),
                   ENV["KCHAT_REDIS_PORT"], ENV["KCHAT_JWT_PUBLIC_KEY"]]
            env = {"PATH": ENV["PATH"], "NODE_PATH": str(CACHE / "socketio" / "node_modules")}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        import socket
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{kind} did not start: {(STATE / 'logs' / f'peer-{kind}.log').read_text()[-1500:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def per_cpu_second(deliveries, seconds):
    return round(deliveries / seconds) if seconds > 0 else 0


def peer_run(kind, peer, label, args):
    """A loadgen run against one system with the CPU of every process of the stack and of the
    peer's server (when one runs) measured around it: (summary, CPU seconds by process)."""
    extra = {kind: peer.proc.pid} if peer else None
    cpu0 = cpu_snapshot(extra)
    if kind == "kchat":
        s = run_loadgen(label, args)
    else:
        s = run_loadgen(label, [f"--protocol={kind}", *args], servers=f"127.0.0.1:{Peer.ports[kind]}")
    return s, cpu_delta(cpu0, cpu_snapshot(extra))


def peer_cpu(kind, used, deliveries):
    """A system's CPU in the peers' 1:1 run, counted two ways so that the comparison is fair
    either way: the server alone (kchat: its daemons and the broker; a peer: its one process)
    and with the Redis server it uses (the stack's: the peers' engine or adapter, kchat's
    routes and read models); for kchat also its whole stack (Postgres, MinIO, the ingress).
    deliveries: those to the recipients (not a sender's copy of its own message)."""
    if kind == "kchat":
        mine = used
        server = sum(v for n, v in used.items() if n in KCHAT_AND_BROKER)
    else:
        mine = {n: v for n, v in used.items() if n in (kind, "redis")}
        server = used.get(kind, 0.0)
    with_redis = server + used.get("redis", 0.0)
    out = {"deliveries_to_recipients": deliveries,
           "cpu_seconds_by_process": {n: round(v, 3) for n, v in mine.items()},
           "cpu_seconds": round(server, 2), "cpu_seconds_with_redis": round(with_redis, 2),
           "deliveries_per_cpu_second": per_cpu_second(deliveries, server),
           "deliveries_per_cpu_second_with_redis": per_cpu_second(deliveries, with_redis)}
    if kind == "kchat":
        whole = sum(used.values())
        out.update({"cpu_seconds_whole_stack": round(whole, 2),
                    "deliveries_per_cpu_second_whole_stack": per_cpu_second(deliveries, whole)})
    return out


def hold_idle(n, label, target, hold_s, settle_ms, src_addrs, deadline_s, measure):
    """Opens n idle connections (nothing sent) to target (loadgen arguments naming the
    servers), in load generator processes of at most 18 000 connections each (a process may
    hold 20 000 descriptors here), calls measure(loadgen_pids) once all are open, waits for
    the processes to end and returns (connections opened, what measure returned)."""
    per_proc = 18000
    procs = []
    for i in range(max(1, -(-n // per_proc))):
        ready, out = STATE / f"{label}-{i}.ready", STATE / f"loadgen-{label}-{i}.json"
        ready.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        cmd = [str(LOADGEN), *target, f"--jwt-key={ENV['KCHAT_JWT_PRIVATE_KEY']}",
               f"--conns={min(per_proc, n - i * per_proc)}", "--convs=0", "--group=1",
               "--messages=0", f"--hold-s={hold_s}", f"--settle-ms={settle_ms}",
               f"--src-addrs={src_addrs}", f"--ready-file={ready}", f"--label={label}-{i}",
               f"--out={out}"]
        with open(STATE / f"loadgen-{label}-{i}.log", "w") as log:
            procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log),
                          ready, out))
    deadline = time.monotonic() + deadline_s
    while (not all(r.exists() or p.poll() is not None for p, r, _ in procs)
           and time.monotonic() < deadline):
        time.sleep(0.2)
    measured = measure([p.pid for p, _, _ in procs if p.poll() is None])
    opened = 0
    for p, _, out in procs:
        p.wait(timeout=300)
        if out.exists():
            opened += json.loads(out.read_text())["results"]["connections_open"]
    if not opened:
        raise RuntimeError("no idle connection opened: " + (
            STATE / f"loadgen-{label}-0.log").read_text()[-300:])
    return opened, measured


def idle_rss(pids, kind, n):
    """Server RSS growth per connection while n idle connections are held."""
    rss0 = sum(status_kib(p) for p in pids.values())
    if kind == "kchat":
        target = [f"--gateways={gateways_arg()}", f"--brokers={BROKERS}"]
    else:
        target = [f"--protocol={kind}", f"--gateways=127.0.0.1:{Peer.ports[kind]}"]

    def measure(_):
        time.sleep(2)
        return sum(status_kib(p) for p in pids.values())

    opened, rss1 = hold_idle(n, f"idle-{kind}", target, 6, 1000, 1, 120, measure)
    return round((rss1 - rss0) * 1024 / max(opened, 1)), opened


def scenario_peers(short, idle=None, systems=("kchat", "centrifugo", "socketio")):
    """kchat, Centrifugo (Redis engine, history on) and Socket.IO (Redis adapter) with the same
    load generator: memory per idle connection, then 1:1 at the same rate (latency at equal
    rate, and CPU per delivery: the servers alone and with the Redis server they use, see
    peer_cpu), then a ramp (throughput at equal p99). Peers run one node each."""
    out = {}
    if set(systems) - {"kchat"}:
        setup = subprocess.run([str(ROOT / "bench" / "peers" / "setup.sh")], capture_output=True,
                               text=True, timeout=1800)
        if setup.returncode:
            out["setup"] = setup.stderr[-500:]
    conns, rate, dur, idle_n = (200, 400, 10, 2000) if short else (2000, 2000, 30, 18000)
    load = [f"--conns={conns}", "--group=2", f"--rate={rate}", f"--duration-s={dur}",
            "--size=100", "--drain-s=60"]
    gw_pids = {d: p for d in DAEMONS if d.startswith("gateway") and (p := pid_of(d))}
    rows = {}
    for kind in systems:
        peer = None
        try:
            if kind == "kchat":
                mem_pids = gw_pids
            else:
                peer = Peer(kind)
                mem_pids = {kind: peer.proc.pid}
            if kind == "kchat" and idle and "gateway_user_bytes_per_conn" in idle:
                # measured on fresh gateways by the idle scenario: after the other scenarios
                # the gateways' heaps have room to spare and would show almost no growth
                per_conn, opened = idle["gateway_user_bytes_per_conn"], idle["connections"]
            else:
                per_conn, opened = idle_rss(mem_pids, kind, idle_n)
            s, used = peer_run(kind, peer, f"peer-{kind}", load)
            r = s["results"]
            # Centrifugo sends a publication to its sender too: per CPU second counts the
            # deliveries to the other members, as kchat's and Socket.IO's do
            g = s["params"]["group"]
            to_others = round(r["deliveries"] * (g - 1) / g) if kind == "centrifugo" else \
                r["deliveries"]
            steps = ramp_steps([1000, 4000, 16000] if short else [1000, 2000, 4000, 8000, 16000,
                                                                   32000],
                               5 if short else 15, label=f"peer-ramp-{kind}",
                               extra=[] if kind == "kchat" else [f"--protocol={kind}"],
                               servers=None if kind == "kchat" else f"127.0.0.1:{Peer.ports[kind]}")
            rows[kind] = {"idle_connections": opened, "server_bytes_per_idle_conn": per_conn,
                          "acked_per_s": round(r["acked_per_s"]),
                          "deliveries_per_s": round(r["deliveries_per_s"]),
                          "ack_latency": r["ack_latency"], "delivery_latency": r["delivery_latency"],
                          **peer_cpu(kind, used, to_others),
                          "check": s["check"]["pass"], "check_detail": s["check"],
                          "ramp": steps, "max_sustained_per_s": best_rate(steps),
                          "max_per_s_p99_under_50ms": best_rate(steps, 50),
                          "max_per_s_p99_under_500ms": best_rate(steps, 500)}
        except Exception as e:  # a peer that cannot run must not hide the others
            rows[kind] = {"error": str(e)[-800:]}
        finally:
            if peer:
                peer.stop()
    out["systems"] = rows
    return out


def scenario_idle(short):
    """Idle connections held open, nothing sent. The full version opens 18 000 a gateway, at
    most 54 000: each process here may hold at most 20 000 descriptors (a hard limit that
    root cannot raise in this container), so the load generator runs as processes of 18 000
    connections, and each gateway holds at most 18 000."""
    n = 2000 if short else 18000 * min(NGW, 3)
    gws = {d: p for d in DAEMONS if d.startswith("gateway") and (p := pid_of(d))}
    rss0 = {d: status_kib(p) for d, p in gws.items()}
    mem0, tcp0 = meminfo(), tcp_mem_pages()

    def measure(loadgen_pids):
        time.sleep(3)  # routes registered, buffers settled
        return ({d: status_kib(p) for d, p in gws.items()}, meminfo(), tcp_mem_pages(),
                sum(status_kib(p) for p in loadgen_pids))

    target = [f"--gateways={gateways_arg()}", f"--brokers={BROKERS}",
              f"--schemas-dir={SCHEMAS}"]
    opened, (rss1, mem1, tcp1, lg_rss) = hold_idle(
        n, "idle", target, 8 if short else 60, 2000, 4 if n > 10000 else 1, 600, measure)
    grown = sum(rss1.values()) - sum(rss0.values())
    slab = (mem1["Slab"] - mem0["Slab"])
    return {"connections": opened, "loadgen_processes": -(-n // 18000),
            "gateway_rss_kib_before": rss0, "gateway_rss_kib_held": rss1,
            "gateway_user_bytes_per_conn": round(grown * 1024 / max(opened, 1)),
            "kernel_slab_kib_delta": slab,
            "kernel_bytes_per_socket_pair": round(slab * 1024 / max(opened, 1)),
            "kernel_tcp_buffer_bytes_per_socket_pair":
                round((tcp1 - tcp0) * os.sysconf("SC_PAGE_SIZE") / max(opened, 1)),
            "loadgen_rss_kib": lg_rss,
            "note": "kernel figures count both ends (client and server sockets) on loopback"}


def scenario_history(short, one2one):
    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (sudo apt-get install -y wrk)"}
    import jwt as pyjwt
    run = one2one["run_id"]
    now = int(time.time())
    tok = pyjwt.encode({"iss": "kchat", "aud": "kchat", "sub": f"u_lg{run}_0", "iat": now,
                        "nbf": now, "exp": now + 3600},
                       Path(ENV["KCHAT_JWT_PRIVATE_KEY"]).read_text(), algorithm="RS256")
    url = (f"http://127.0.0.1:{ENV['KCHAT_API_PORT']}/conversations/c_lg{run}_0/messages"
           f"?limit=50")
    dur = "5s" if short else "20s"
    r = subprocess.run(["wrk", "-t2", "-c32", f"-d{dur}", "--latency", "-H",
                        f"Authorization: Bearer {tok}", url],
                       capture_output=True, text=True, timeout=120)
    out = {"url": url.split("?")[0].replace(run, "<run>"), "raw": r.stdout}
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            out["requests_per_s"] = float(line.split()[1])
        for q in ("50%", "90%", "99%"):
            if line.startswith(q):
                out[f"p{q[:-1]}"] = line.split()[1]
        if "Non-2xx" in line:
            out["non_2xx"] = int(line.split()[-1])
    return out


def processor_totals():
    """The processor's transaction commit seconds (_count, _sum) and commands per transaction
    (_sum), one scrape."""
    vals = samples(scrape(f"http://127.0.0.1:{ENV['KCHAT_PROCESSOR_ADMIN_PORT']}"),
                   "kchat_processor_transaction_")
    return (vals.get("kchat_processor_transaction_commit_seconds_count", 0.0),
            vals.get("kchat_processor_transaction_commit_seconds_sum", 0.0),
            vals.get("kchat_processor_transaction_commands_sum", 0.0))


def restart_processor(settings):
    env = {k: v for k, v in ENV.items() if k not in ("KCHAT_PRODUCERS", "KCHAT_FETCH_WAIT_MS")}
    env.update(settings)
    subprocess.run([str(STACK_ROOT / "scripts" / "stack.sh"), "restart", "processor"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def scenario_txn(short):
    """The processor's transactions: producers taking turns (--producers) and how long the
    broker holds a fetch of commands, which is what gathers a batch (--fetch-wait-ms), each
    setting on a restarted processor, 1:1 with 400 connections at 2 000 msg/s. Not in the
    default list."""
    settings = [(1, 10), (2, 10), (1, 18), (2, 18), (1, 25), (2, 25)]
    rate, dur, reps = (2000, 8, 1) if short else (2000, 10, 3)
    rows = []
    try:
        for producers, wait in settings:
            restart_processor({"KCHAT_PRODUCERS": str(producers),
                               "KCHAT_FETCH_WAIT_MS": str(wait)})
            label = f"txn-p{producers}-w{wait}"
            run_loadgen(f"{label}-warm", ["--conns=400", "--group=2", f"--rate={rate}",
                                          "--duration-s=4", "--size=100"])
            for rep in range(reps):
                c0, t0, n0 = processor_totals()
                s = run_loadgen(f"{label}-{rep}", ["--conns=400", "--group=2", f"--rate={rate}",
                                                   f"--duration-s={dur}", "--size=100"])
                c1, t1, n1 = processor_totals()
                r = s["results"]
                txns = max(c1 - c0, 1)
                rows.append({"producers": producers, "fetch_wait_ms": wait, "rep": rep,
                             "rate": rate, "acked_per_s": round(r["acked_per_s"]),
                             "ack_p50_ms": r["ack_latency"]["p50_ms"],
                             "ack_p99_ms": r["ack_latency"]["p99_ms"],
                             "transactions_per_s": round((c1 - c0) / dur, 1),
                             "commands_per_transaction": round((n1 - n0) / txns, 1),
                             "commit_mean_ms": round((t1 - t0) * 1000 / txns, 1),
                             "check": s["check"]["pass"], "check_problems": check_problems(s)})
    finally:
        restart_processor({})
    return {"rows": rows}


def cost_window(label, rate, secs):
    """One window of the costs scenario: 1:1 at rate msg/s (0: idle) for secs, with every
    process's CPU, the broker's requests and the processor's transactions around it."""
    errors = []
    req0 = read_requests(errors)
    tx0 = processor_totals()[0]
    cpu0, t0 = cpu_snapshot(), time.monotonic()
    s = None
    if rate:
        s = run_loadgen(label, ["--conns=200", "--group=2", f"--rate={rate}",
                                f"--duration-s={secs}", "--size=100", "--drain-s=30"])
    else:
        time.sleep(secs)
    cpu1, wall = cpu_snapshot(), time.monotonic() - t0
    tx1 = processor_totals()[0]
    req1 = read_requests(errors)
    if errors:
        raise RuntimeError(errors[0])
    used = cpu_delta(cpu0, cpu1)
    return {"rate": rate, "seconds": round(wall, 2),
            "messages": s["results"]["acked"] if s else 0,
            "cores": {n: round(v / wall, 4) for n, v in used.items()},
            "transactions_per_s": round((tx1 - tx0) / wall, 1),
            "requests_per_s": {k: round((v - req0.get(k, 0)) / wall, 1) for k, v in req1.items()
                               if v - req0.get(k, 0) > 0 and k not in CONTROLLER_REQUESTS},
            "check": s["check"]["pass"] if s else True,
            "check_problems": check_problems(s) if s else []}


def scenario_costs(short):
    """What a message costs at the margin and what the stack costs whatever the rate: an idle
    window, then 1:1 windows at a low and a high rate taken in turns (three of each; one in
    the short version). Per process: the cores used idle and at each rate (medians), the
    marginal CPU per message (the slope between the two rates) and what is left at the low
    rate once its messages are paid for (fixed: above idle, per processor transaction). The
    broker's requests per second by kind (AddPartitionsToTxnVerification, which the broker
    sends itself, included). Not in the default list."""
    low, high, secs, reps = (400, 2000, 8, 1) if short else (400, 2000, 15, 3)
    idle = cost_window("costs-idle", 0, secs)
    wins = {low: [], high: []}
    for rep in range(reps):
        for rate in (low, high):
            wins[rate].append(cost_window(f"costs-{rate}-{rep}", rate, secs))
    return cost_figures(idle, wins, low, high)


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def cost_figures(idle, wins, low, high):
    """The costs scenario's figures from its windows (cost_window's results: idle, and a
    list per rate): medians per rate, and per process the marginal µs per message (the slope
    of cores against messages/s between the two rates) and the fixed cores above idle at the
    low rate (what is left once its messages are paid at the margin)."""
    def at(rate, f):
        return median([f(w) for w in wins[rate]])

    mps = {r: at(r, lambda w: w["messages"] / w["seconds"]) for r in (low, high)}
    procs = sorted(set(idle["cores"]).intersection(*[w["cores"] for r in (low, high)
                                                     for w in wins[r]]))
    rows = {}
    for n in procs:
        c_idle = idle["cores"][n]
        c_low, c_high = at(low, lambda w: w["cores"][n]), at(high, lambda w: w["cores"][n])
        marginal = (c_high - c_low) / max(mps[high] - mps[low], 1)
        rows[n] = {"idle": c_idle, "low": round(c_low, 4), "high": round(c_high, 4),
                   "marginal_us_per_message": round(marginal * 1e6, 1),
                   "fixed_above_idle": round(c_low - marginal * mps[low] - c_idle, 4)}
    txn = {r: at(r, lambda w: w["transactions_per_s"]) for r in (low, high)}
    kinds = sorted({k for r in (low, high) for w in wins[r] for k in w["requests_per_s"]} |
                   set(idle["requests_per_s"]))
    reqs = {k: {"idle": idle["requests_per_s"].get(k, 0),
                **{str(r): at(r, lambda w, k=k: w["requests_per_s"].get(k, 0))
                   for r in (low, high)}}
            for k in kinds}
    fixed = sum(v["fixed_above_idle"] for v in rows.values())
    every = [w for r in (low, high) for w in wins[r]]
    return {"low": low, "high": high,
            "messages_per_s": {str(r): round(v) for r, v in mps.items()},
            "transactions_per_s": {str(r): v for r, v in txn.items()},
            "processes": rows, "requests_per_s": reqs,
            "fixed_above_idle_cores": round(fixed, 3),
            "fixed_ms_per_transaction": round(fixed * 1000 / max(txn[low], 1), 2),
            "windows": {"idle": idle, **{str(r): wins[r] for r in (low, high)}},
            "check": all(w["check"] for w in every),
            "check_problems": sorted({p for w in every for p in w["check_problems"]})}


def scenario_replay(short):
    recs = topic_records().get("chat.events", 0)
    binary = BUILD / "projector" / "kchat-projector"
    for port in (BASE + 120, BASE + 121, BASE + 122):  # a port may be taken as an ephemeral one
        t0 = time.monotonic()
        r = subprocess.run([str(binary), "--rebuild", f"--admin-port={port}",
                            f"--schemas-dir={SCHEMAS}"], capture_output=True, text=True,
                           timeout=900)
        dt = time.monotonic() - t0
        if r.returncode == 0 or "cannot listen" not in r.stderr:
            break
    if r.returncode != 0:
        return {"error": r.stderr[-1500:]}
    return {"chat_events_offsets": recs, "seconds": round(dt, 2),
            "events_per_s": round(recs / dt) if dt > 0 else 0}


PEER_SYSTEMS = ("kchat", "centrifugo", "socketio")
KCHAT_SCENARIOS = ("idle", "one2one", "groups", "ramp", "peers")


GC_PAUSE = re.compile(r"GC\(\d+\) Pause (Young|Full) \(([^)]*)\).* ([0-9.]+)ms$")


def broker_gc(path=None):
    """The broker's collections over the stack's life (the GC log bench/run.sh asks for): the
    young and full pauses, their count, sum and longest. Every thread of the broker stops
    for a pause, so a long one is a stall of every request in flight."""
    path = path or STATE / "kafka-gc.log"
    try:
        text = Path(path).read_text()
    except OSError as e:
        return {"error": f"no GC log: {e}"}
    out = {}
    for line in text.splitlines():
        m = GC_PAUSE.search(line)
        if not m:
            continue
        kind, ms = m.group(1).lower(), float(m.group(3))
        f = out.setdefault(kind, {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "causes": {}})
        f["count"] += 1
        f["total_ms"] = round(f["total_ms"] + ms, 1)
        f["max_ms"] = max(f["max_ms"], ms)
        f["causes"][m.group(2)] = f["causes"].get(m.group(2), 0) + 1
    return out


def commit_of(tree):
    """The commit a tree is at (git describe, "-dirty" when it has changes), or "?"."""
    r = subprocess.run(["git", "-C", str(tree), "describe", "--always", "--dirty", "--abbrev=10"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true", help="the short version (make bench)")
    ap.add_argument("--only", default="kafka,idle,one2one,groups,ramp,history,replay,peers",
                    help="scenarios to run; txn (the processor's settings) and costs (fixed "
                         "and marginal CPU) only when named")
    ap.add_argument("--kchat-only", action="store_true",
                    help="of the scenarios chosen, only those that measure kchat itself (idle, "
                         "one2one, groups, ramp, and kchat's part of peers): what a baseline runs")
    ap.add_argument("--warmup", type=int, default=0, metavar="SECONDS",
                    help="unmeasured 1:1 load for this long before the first scenario that "
                         "loads kchat (after kafka and idle), to warm the broker's JIT")
    ap.add_argument("--name", default="", help="a name for this run in the results")
    ap.add_argument("--baseline-results", default="",
                    help="the results of a baseline's run (bench/run.sh --baseline): the summary "
                         "ends with a table baseline vs this run")
    ap.add_argument("--out", default=str(STATE / "bench-results.json"))
    a = ap.parse_args()
    only = a.only.split(",")
    if a.kchat_only:
        only = [n for n in only if n in KCHAT_SCENARIOS]
    res = {"machine": {"nproc": os.cpu_count(),
                       "cpu": next((line.split(":", 1)[1].strip()
                                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                                    if line.startswith("model name")), "?"),
                       "mem_kib": meminfo()["MemTotal"]},
           "name": a.name, "commit": commit_of(STACK_ROOT),
           "short": a.short, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name in ["kafka", "idle", "one2one", "groups", "ramp", "history", "replay", "peers",
                 "txn", "costs"]:  # idle first: on fresh gateways
        if name not in only:
            continue
        if a.warmup > 0 and name != "idle" and name in KCHAT_SCENARIOS + ("txn", "costs") and \
                "warmup" not in res:
            print(f"== warm-up ({a.warmup} s)", file=sys.stderr)
            try:
                res["warmup"] = warm_up(a.warmup, a.short)
            except Exception as e:
                res["warmup"] = {"error": str(e)}
        print(f"== {name}", file=sys.stderr)
        try:
            if name == "peers":
                res[name] = scenario_peers(a.short, res.get("idle"),
                                           ("kchat",) if a.kchat_only else PEER_SYSTEMS)
            elif name == "history":
                if "one2one" not in res:
                    res[name] = {"skipped": "needs the one2one scenario's conversations"}
                    continue
                res[name] = scenario_history(a.short, res["one2one"])
            else:
                res[name] = globals()[f"scenario_{name}"](a.short)
        except Exception as e:  # one broken scenario must not hide the others' figures
            res[name] = {"error": str(e)}
    res["broker_gc"] = broker_gc()
    res["failures"] = failures(res)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(summary(res))
    if a.baseline_results:
        bp = Path(a.baseline_results)
        print("\n" + (comparison(json.loads(bp.read_text()), res) if bp.exists() else
                      f"baseline vs current: no baseline results ({bp} is missing)"))
    ratios = peer_ratios(res)
    if ratios:
        print("\n" + ratios)
    found = peer_findings(res)
    if found:
        print("\nThe peers' own checks (figures of the peers, not failures of the run):\n" +
              "\n".join(f"- {f}" for f in found))
    if res["failures"]:
        print("\nFAILED:\n" + "\n".join(f"- {f}" for f in res["failures"]))
    print(f"\nfull results: {a.out}", file=sys.stderr)
    return 1 if res["failures"] else 0


def peer_findings(res):
    """What the load generator's check found in a peer's runs (a peer losing messages past its
    limit, say): reported beside the figures, never a failure of the run."""
    out = []
    for kind, r in ((res.get("peers") or {}).get("systems") or {}).items():
        if kind == "kchat" or "error" in r:
            continue
        if r.get("check_problems"):
            out.append(f"{kind} at equal rate: {', '.join(r['check_problems'])}")
        out += [f"{kind} ramp at {st['rate']} msg/s: {', '.join(st['integrity_problems'])}"
                for st in r.get("ramp", []) if st.get("integrity_problems")]
    return out


def failures(res):
    """Why a run ends with a non-zero status: a scenario that errored (or could not read the
    broker's request counters it was asked to), or a load generator check that failed. At
    equal load every item of the check counts; at a ramp step only a message lost, doubled or
    misordered, since a step beyond what the system sustains may end its drain with acks still
    outstanding. Timings and ratios never count."""
    out = [f"{name}: error: {v['error'][:400]}" for name, v in res.items()
           if isinstance(v, dict) and "error" in v]
    for name in ("one2one", "groups"):
        s = res.get(name) or {}
        if "check" in s and (p := check_problems(s)):
            out.append(f"{name}: check failed: {', '.join(p)}")
        if s.get("kafka_requests_error"):
            out.append(f"{name}: the broker's request counters: {s['kafka_requests_error'][:300]}")
    ramps = [("ramp", (res.get("ramp") or {}).get("steps", [])),
             ("warm-up", [res["warmup"]] if "rate" in (res.get("warmup") or {}) else [])]
    for kind, r in ((res.get("peers") or {}).get("systems") or {}).items():
        if "error" in r:
            out.append(f"peers {kind}: error: {r['error'][:400]}")
            continue
        if kind != "kchat":
            continue  # what a peer loses past its limit is a figure of the peer (notes)
        if r.get("check_problems"):
            out.append(f"peers {kind}: check failed: {', '.join(r['check_problems'])}")
        ramps.append((f"peers {kind} ramp", r.get("ramp", [])))
    for label, steps in ramps:
        out += [f"{label} at {st['rate']} msg/s: check failed: "
                f"{', '.join(st['integrity_problems'])}"
                for st in steps if st.get("integrity_problems")]
    out += [f"txn {r['producers']} producers, fetch wait {r['fetch_wait_ms']} ms: check failed: "
            f"{', '.join(r['check_problems'])}"
            for r in (res.get("txn") or {}).get("rows", []) if r.get("check_problems")]
    out += [f"costs: check failed: {', '.join((res.get('costs') or {}).get('check_problems', []))}"
            for _ in [1] if (res.get("costs") or {}).get("check") is False]
    return out


def num(v, digits=1):
    """A figure for a table: thousands apart by a space, fixed decimals; blank when missing."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    return f"{v:,.{digits}f}".replace(",", " ")


def cost_tables(res):
    """The one2one and groups runs' costs: Kafka records and broker requests per chat message,
    and the CPU of every process of the stack per delivered message."""
    runs = [(n, res[n]) for n in ("one2one", "groups")
            if res.get(n) and "results" in res[n]]
    if not runs:
        return []
    lines = ["| per chat message | Kafka records | requests: produce | fetch | transactional | "
             "total | by kind |", "|---|---|---|---|---|---|---|"]
    for name, s in runs:
        rq = s.get("kafka_requests_per_message")
        if not rq:
            lines.append(f"| {name} | {s['kafka_records_per_message']:.2f} | "
                         f"{s.get('kafka_requests_error') or s.get('kafka_requests_note', '')} |")
            continue
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in rq["by_kind"].items() if v)
        lines.append(f"| {name} | {s['kafka_records_per_message']:.2f} | {rq['produce']:.2f} | "
                     f"{rq['fetch']:.2f} | {rq['transactional']:.2f} | {rq['total']:.2f} | "
                     f"{kinds} |")
    names = []
    for _, s in runs:
        names += [n for n in s.get("cpu_us_per_delivery", {}) if n not in names]
    order = KCHAT_AND_BROKER + ["postgres", "redis", "minio", "nginx"]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    lines += ["", "| CPU µs per delivery | " + " | ".join(names) +
              " | total | CPU s | deliveries per CPU s | kchat and broker alone |",
              "|---|" + "---|" * (len(names) + 4)]
    for name, s in runs:
        per = s.get("cpu_us_per_delivery", {})
        lines.append(f"| {name} | " + " | ".join(num(per.get(n)) for n in names) +
                     f" | {num(s.get('cpu_us_per_delivery_total'))} | "
                     f"{num(s.get('cpu_seconds_total'), 2)} | "
                     f"{num(s.get('deliveries_per_cpu_second'), 0)} | "
                     f"{num(s.get('deliveries_per_cpu_second_kchat_and_broker'), 0)} |")
    trees = "; ".join(f"{name}: " + ", ".join(f"{n} {a} → {b}" for n, (a, b) in
                                              s.get("cpu_processes", {}).items() if max(a, b) > 1)
                      for name, s in runs)
    lines.append(f"(processes counted, start → end: {trees}; a tree's processes that ended in "
                 f"between count through their parent's reaped-children time)")
    return lines


def summary(res):
    lines = []
    k = res.get("kafka", {})
    if "produce_per_s" in k:
        lines += ["| Kafka alone | records | size | produce/s (acks=all) | consume/s |",
                  "|---|---|---|---|---|",
                  f"| | {k['records']} | {k['size']} B | {k['produce_per_s']:.0f} | "
                  f"{k['consume_per_s']:.0f} |", ""]
    rows = []
    for name in ("one2one", "groups"):
        s = res.get(name)
        if not s or "results" not in s:
            continue
        r, p = s["results"], s["params"]
        al, dl = r["ack_latency"], r["delivery_latency"]
        rows.append(f"| {name} | {p['connections']} | {p['group']} | {p['rate']:.0f} | "
                    f"{r['acked_per_s']:.0f} | {r['deliveries_per_s']:.0f} | "
                    f"{al['p50_ms']:.1f} / {al['p99_ms']:.1f} / {al['max_ms']:.1f} | "
                    f"{dl['p50_ms']:.1f} / {dl['p99_ms']:.1f} / {dl['max_ms']:.1f} | "
                    f"{s['kafka_records_per_message']:.2f} | "
                    f"{'pass' if s['check']['pass'] else 'FAIL'} |")
    if rows:
        lines += ["| scenario | conns | group | target msg/s | acked/s | deliveries/s | "
                  "ack p50/p99/max ms | delivery p50/p99/max ms | Kafka records/msg | check |",
                  "|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]
        lines += cost_tables(res)
    rp = res.get("ramp")
    if rp and "steps" in rp:
        lines += ["", "| ramp: target msg/s | acked/s | ack p50 ms | ack p99 ms | "
                  "delivery p99 ms | sustained |", "|---|---|---|---|---|---|"]
        lines += [f"| {st['rate']} | {st['acked_per_s']} | {st['ack_p50_ms']:.1f} | "
                  f"{st['ack_p99_ms']:.1f} | {st['delivery_p99_ms']:.1f} | "
                  f"{'yes' if st['sustained'] else 'no'} |" for st in rp["steps"]]
        if "produce_per_s" in k:
            lines.append(f"max sustained {rp['max_sustained_per_s']} msg/s = "
                         f"{rp['max_sustained_per_s'] / k['produce_per_s']:.4f} of Kafka alone's "
                         f"produce rate")
        lines.append("")
    i = res.get("idle")
    if i and "connections" in i:
        lines.append(f"idle: {i['connections']} connections, gateway user space "
                     f"{i['gateway_user_bytes_per_conn']} B/conn, kernel slab "
                     f"{i['kernel_bytes_per_socket_pair']} B per socket pair (whole machine: "
                     f"noisy), TCP buffers {i['kernel_tcp_buffer_bytes_per_socket_pair']} B")
    h = res.get("history")
    if h:
        lines.append(f"history: {h.get('requests_per_s', h.get('skipped', h.get('error')))} "
                     f"req/s, p50 {h.get('p50')}, p99 {h.get('p99')}")
    rp = res.get("replay")
    if rp:
        lines.append(f"replay: {rp.get('events_per_s', rp.get('error'))} events/s "
                     f"({rp.get('chat_events_offsets')} offsets in {rp.get('seconds')} s)")
    tx = res.get("txn", {}).get("rows")
    if tx:
        lines += ["", "| producers | fetch-wait-ms | acked/s | ack p50 ms | ack p99 ms | "
                  "transactions/s | commands per transaction | mean commit ms | check |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['producers']} | {r['fetch_wait_ms']} | {r['acked_per_s']} | "
                  f"{r['ack_p50_ms']:.1f} | {r['ack_p99_ms']:.1f} | {r['transactions_per_s']} | "
                  f"{r['commands_per_transaction']} | {r['commit_mean_ms']} | "
                  f"{'pass' if r['check'] else 'FAIL'} |" for r in tx]
    co = res.get("costs")
    if co and "processes" in co:
        lo, hi = co["low"], co["high"]
        lines += ["", f"costs: {co['messages_per_s'][str(lo)]} and {co['messages_per_s'][str(hi)]} "
                  f"msg/s over the windows; transactions/s {co['transactions_per_s'][str(lo)]} "
                  f"and {co['transactions_per_s'][str(hi)]}; fixed above idle "
                  f"{co['fixed_above_idle_cores']} cores, {co['fixed_ms_per_transaction']} ms of "
                  "CPU per transaction", "",
                  f"| process | cores idle | at {lo} msg/s | at {hi} msg/s | marginal µs per "
                  "message | fixed cores above idle |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {v['idle']:.3f} | {v['low']:.3f} | {v['high']:.3f} | "
                  f"{v['marginal_us_per_message']:.1f} | {v['fixed_above_idle']:.3f} |"
                  for n, v in co["processes"].items()]
        lines += ["", f"| broker requests/s | idle | at {lo} msg/s | at {hi} msg/s |",
                  "|---|---|---|---|"]
        lines += [f"| {k} | {v['idle']} | {v[str(lo)]} | {v[str(hi)]} |"
                  for k, v in sorted(co["requests_per_s"].items(), key=lambda kv: -kv[1][str(hi)])]
    pe = res.get("peers", {}).get("systems")
    if pe:
        lines += ["", "| system | bytes per idle conn (server) | acked/s | deliveries/s | "
                  "ack p50/p99/max ms | delivery p50/p99/max ms | CPU s: server / with Redis | "
                  "deliveries per CPU s: server | with Redis | check |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for kind, r in pe.items():
            if "error" in r:
                lines.append(f"| {kind} | error: {r['error'][:120]} |")
                continue
            al, dl = r["ack_latency"], r["delivery_latency"]
            lines.append(f"| {kind} | {r['server_bytes_per_idle_conn']} | {r['acked_per_s']} | "
                         f"{r['deliveries_per_s']} | {al['p50_ms']:.1f} / {al['p99_ms']:.1f} / "
                         f"{al['max_ms']:.1f} | {dl['p50_ms']:.1f} / {dl['p99_ms']:.1f} / "
                         f"{dl['max_ms']:.1f} | "
                         f"{r['cpu_seconds']} / {r['cpu_seconds_with_redis']} | "
                         f"{r['deliveries_per_cpu_second']} | "
                         f"{r['deliveries_per_cpu_second_with_redis']} | "
                         f"{'pass' if r['check'] else 'FAIL'} |")
        if "centrifugo" in pe and "error" not in pe["centrifugo"]:
            lines.append("(Centrifugo's deliveries/s include its publication to the sender; "
                         "its deliveries per CPU s count only those to the other members)")
        if "cpu_seconds_whole_stack" in pe.get("kchat", {}):
            k = pe["kchat"]
            lines.append(f"(server: kchat's daemons and its broker, a peer's one process; with "
                         f"Redis: plus the stack's Redis, which the peers use as engine or "
                         f"adapter. kchat's whole stack, Postgres, MinIO and the ingress "
                         f"included: {k['cpu_seconds_whole_stack']} CPU s, "
                         f"{k['deliveries_per_cpu_second_whole_stack']} deliveries per CPU s)")
        lines += ["", "| system | ramp steps (target: acked/s, ack p99 ms) | max sustained msg/s | "
                  "with p99 ≤ 50 ms | with p99 ≤ 500 ms |", "|---|---|---|---|---|"]
        for kind, r in pe.items():
            if "ramp" in r:
                st = "; ".join(f"{x['rate']}: {x['acked_per_s']}, {x['ack_p99_ms']:.0f}"
                               + ("" if x["sustained"] else " (not sustained)") for x in r["ramp"])
                lines.append(f"| {kind} | {st} | {r['max_sustained_per_s']} | "
                             f"{r['max_per_s_p99_under_50ms']} | {r['max_per_s_p99_under_500ms']} |")
    gc = res.get("broker_gc") or {}
    pauses = []
    for kind in ("young", "full"):
        g = gc.get(kind)
        if g:
            causes = ", ".join(f"{c} {n}" for c, n in g["causes"].items())
            pauses.append(f"{kind} {g['count']} pauses, {g['total_ms']:.0f} ms in all, "
                          f"longest {g['max_ms']:.1f} ms ({causes})")
    if pauses:
        lines += ["", "broker GC over the stack's life: " + "; ".join(pauses)]
    return "\n".join(lines)


def ratio(a, b):
    """a / b for a table, blank when either is missing or b is zero."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return ""
    return f"{a / b:.2f}"


def peer_ratios(res):
    """kchat / each peer, same run: deliveries per CPU second (servers alone, with Redis, and
    kchat's whole stack against the peer with Redis), throughput with an ack p99 within 500 ms
    and 50 ms, ack p50 and p99 at equal rate, server memory per idle connection."""
    pe = (res.get("peers") or {}).get("systems") or {}
    k = pe.get("kchat")
    peers = [(n, r) for n, r in pe.items() if n != "kchat" and "error" not in r]
    if not k or "error" in k or not peers:
        return ""
    figures = [("deliveries per CPU second, servers alone", "deliveries_per_cpu_second", None),
               ("deliveries per CPU second, with Redis", "deliveries_per_cpu_second_with_redis",
                None),
               ("deliveries per CPU second, kchat's whole stack / the peer with Redis",
                "deliveries_per_cpu_second_whole_stack", "deliveries_per_cpu_second_with_redis"),
               ("msg/s sustained with ack p99 ≤ 500 ms", "max_per_s_p99_under_500ms", None),
               ("msg/s sustained with ack p99 ≤ 50 ms", "max_per_s_p99_under_50ms", None),
               ("ack p50 ms at equal rate", ("ack_latency", "p50_ms"), None),
               ("ack p99 ms at equal rate", ("ack_latency", "p99_ms"), None),
               ("server bytes per idle connection", "server_bytes_per_idle_conn", None)]

    def get(r, key):
        return r.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else r.get(key)

    lines = ["kchat / peers (same run)", "",
             "| figure | kchat | " + " | ".join(f"{n} | kchat / {n}" for n, _ in peers) + " |",
             "|---|---|" + "---|---|" * len(peers)]
    for label, key, peer_key in figures:
        kv, digits = get(k, key), 1 if label.startswith("ack") else 0
        cells = [f"{num(get(r, peer_key or key), digits)} | {ratio(kv, get(r, peer_key or key))}"
                 for _, r in peers]
        lines.append(f"| {label} | {num(kv, digits)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_figures(res):
    """The figures of a run that the comparison with a baseline shows: [(label, value)], and
    the decimals each is shown with (figure_digits)."""
    out = []
    i = res.get("idle") or {}
    if "gateway_user_bytes_per_conn" in i:
        out.append(("idle: gateway bytes per connection", i["gateway_user_bytes_per_conn"]))
    for name in ("one2one", "groups"):
        s = res.get(name) or {}
        if "results" not in s:
            continue
        r = s["results"]
        al, dl = r["ack_latency"], r["delivery_latency"]
        out += [(f"{name}: check", "pass" if s["check"]["pass"] else "FAIL"),
                (f"{name}: acked/s", r["acked_per_s"]),
                (f"{name}: ack p50 ms", al["p50_ms"]), (f"{name}: ack p99 ms", al["p99_ms"]),
                (f"{name}: delivery p50 ms", dl["p50_ms"]),
                (f"{name}: delivery p99 ms", dl["p99_ms"]),
                (f"{name}: Kafka records/msg", s["kafka_records_per_message"])]
        rq = s.get("kafka_requests_per_message") or {}
        out += [(f"{name}: broker requests/msg, {g}", rq.get(g))
                for g in ("produce", "fetch", "transactional", "total")]
        out += [(f"{name}: CPU µs per delivery, {p}", v)
                for p, v in s.get("cpu_us_per_delivery", {}).items()]
        out += [(f"{name}: CPU µs per delivery, total", s.get("cpu_us_per_delivery_total")),
                (f"{name}: deliveries per CPU s, whole stack", s.get("deliveries_per_cpu_second")),
                (f"{name}: deliveries per CPU s, kchat and broker",
                 s.get("deliveries_per_cpu_second_kchat_and_broker"))]
    rp = res.get("ramp") or {}
    if "steps" in rp:
        out.append(("ramp: highest sustained msg/s", rp["max_sustained_per_s"]))
        out += [(f"ramp: ack p99 ms at {st['rate']} msg/s", st["ack_p99_ms"]) for st in rp["steps"]]
    k = ((res.get("peers") or {}).get("systems") or {}).get("kchat") or {}
    if "ack_latency" in k:
        out += [("peers' 1:1: ack p50 ms", k["ack_latency"]["p50_ms"]),
                ("peers' 1:1: ack p99 ms", k["ack_latency"]["p99_ms"]),
                ("peers' 1:1: deliveries per CPU s, kchat and broker",
                 k["deliveries_per_cpu_second"]),
                ("peers' 1:1: deliveries per CPU s, with Redis",
                 k["deliveries_per_cpu_second_with_redis"]),
                ("peers' 1:1: deliveries per CPU s, whole stack",
                 k.get("deliveries_per_cpu_second_whole_stack")),
                ("peers' ramp: msg/s with ack p99 ≤ 500 ms", k["max_per_s_p99_under_500ms"]),
                ("peers' ramp: msg/s with ack p99 ≤ 50 ms", k["max_per_s_p99_under_50ms"])]
        if "gateway_user_bytes_per_conn" not in i:  # without the idle scenario: the peers'
            out.append(("peers' idle: gateway bytes per connection",
                        k["server_bytes_per_idle_conn"]))
    for kind in ("young", "full"):
        g = (res.get("broker_gc") or {}).get(kind)
        if g:
            out += [(f"broker GC: {kind} pauses", g["count"]),
                    (f"broker GC: longest {kind} pause ms", g["max_ms"])]
    return out


def figure_digits(label):
    """Decimals for a figure of compare_figures, by its label: latencies and µs 1, per-message
    counts 2, rates and bytes 0."""
    if re.search(r"p(50|99) ms|pause ms", label) or "µs" in label:
        return 1
    return 2 if "/msg" in label else 0


def comparison(base, cur):
    """A table baseline vs current of every figure compare_figures gives either run, with the
    ratio current / baseline."""
    b, c = dict(compare_figures(base)), dict(compare_figures(cur))
    labels = [lbl for lbl, _ in compare_figures(cur)]
    labels += [lbl for lbl, _ in compare_figures(base) if lbl not in c]
    if not labels:
        return "baseline vs current: no figure to compare"
    bname = f"baseline {base.get('name') or ''} ({base.get('commit', '?')})".replace("  ", " ")
    lines = [f"Baseline vs current (current / baseline: above 1 means more in the current run)",
             "", f"| figure | {bname} | current ({cur.get('commit', '?')}) | current / baseline |",
             "|---|---|---|---|"]
    for lbl in labels:
        digits = figure_digits(lbl)
        lines.append(f"| {lbl} | {num(b.get(lbl), digits)} | {num(c.get(lbl), digits)} | "
                     f"{ratio(c.get(lbl), b.get(lbl))} |")
    if base.get("failures"):
        lines.append("(the baseline's run failed: " + "; ".join(base["failures"]) + ")")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
