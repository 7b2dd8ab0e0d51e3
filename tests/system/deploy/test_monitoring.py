"""monitoring/: the Prometheus rules pass promtool (their syntax and their unit tests), the
Grafana dashboards are well formed and are what monitoring/grafana/dashboards.py writes, and,
against the running stack, a Prometheus (Debian's `prometheus`) scraping every daemon with
the rules loaded has data for every dashboard query, every recording rule and the left-hand
side of every alert, once a little traffic has gone through the stack.

Prometheus listens on 127.0.0.1:KCHAT_PORT_BASE + 390 (unused by the stack and by the other
tests), with its data in pytest's temporary folder; it is stopped when the module ends,
also when a test fails.
"""
import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid

import pytest
import websockets
import yaml

from kchat_testkit.api import User
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.stack import ENV, NGATEWAYS, ROOT, SPEC

pytestmark = pytest.mark.skipif(os.environ.get("SANITIZE") == "1",
                                reason="the sanitizer pass does not repeat the monitoring checks")

RULES = ROOT / "monitoring" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "alerts_test.yml"
DASHBOARD_DIR = ROOT / "monitoring" / "grafana" / "dashboards"
DASHBOARD_SCRIPT = ROOT / "monitoring" / "grafana" / "dashboards.py"
PROMETHEUS_PORT_OFFSET = 390
JOBS = {d["name"]: f"kchat-{d['name']}" for d in SPEC}

# Grafana's variables, as the test gives them to Prometheus: every instance and client ("All"
# is ".*" in the dashboards), and a rate window (Grafana's for a few hours' range) that still
# holds the test's traffic while the recording rules catch up.
SUBSTITUTIONS = {"$__rate_interval": "5m", "$instance": ".*", "$client": ".*"}

# Alerts on series no kchat daemon exports: the broker's disk, from node_exporter on the
# broker hosts (job kafka-node). alerts_test.yml tests them on synthetic series only.
NOT_FROM_KCHAT = {"KchatKafkaDiskLow", "KchatKafkaDiskFillingUp"}

# Counters whose series a daemon creates only at their first increment (one series per label
# value), which a fresh test stack under ordinary traffic never reaches. A panel reading only
# one of them may be empty here; each is named with where its series would be initialised.
# None today: the counters of rare events (closes by code, login refusals, throttle checks
# skipped, rejections) have their series, one per label value, from their daemon's start.
CREATED_ON_FIRST_USE = {}


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool (Debian package prometheus) is installed by scripts/deps.sh --test"
    return path


def dashboards():
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panel_queries():
    """(dashboard, panel title, refId, expr with the variables substituted)."""
    out = []
    for name, d in dashboards().items():
        for p in d["panels"]:
            for t in p.get("targets", []):
                expr = t["expr"]
                for var, value in SUBSTITUTIONS.items():
                    expr = expr.replace(var, value)
                assert "$" not in expr, f"{name} / {p['title']}: a variable left in {expr}"
                out.append((name, p["title"], t["refId"], expr))
    return out


def rules():
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


# ---- the left-hand side of an alert's expression ----

def _top_level(expr):
    """Yields (index, char) of expr's characters outside (), [], {} and quotes."""
    depth, quote, i = 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            yield i, c
        i += 1


def _unwrap(expr):
    """expr without parentheses around the whole of it."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, c in enumerate(expr):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr
        expr = expr[1:-1].strip()
    return expr


def _split_set_operators(expr):
    """The operands of the top-level `and`, `or` and `unless` of expr (their `on (...)` or
    `ignoring (...)` dropped)."""
    positions = {i for i, _ in _top_level(expr)}
    parts, start = [], 0
    for m in re.finditer(r"\b(and|or|unless)\b", expr):
        if m.start() in positions:
            parts.append(expr[start:m.start()])
            start = m.end()
    parts.append(expr[start:])
    return [re.sub(r"^\s*(on|ignoring)\s*\([^)]*\)", "", p).strip() for p in parts]


def _without_comparison(expr):
    """The left-hand side of expr's last top-level comparison (expr if it has none)."""
    positions = {i for i, _ in _top_level(expr)}
    cut = None
    for m in re.finditer(r"==|!=|>=|<=|>|<", expr):
        if m.start() in positions:
            cut = m.start()
    return expr if cut is None else expr[:cut].strip()


def alert_left_hand_sides(expr):
    """The expressions an alert compares with its thresholds: each operand of its set
    operators, without the comparison; absent(x) gives x (absent is empty when x is there)."""
    expr = _unwrap(expr)
    parts = _split_set_operators(expr)
    if len(parts) > 1:
        return [lhs for p in parts for lhs in alert_left_hand_sides(p)]
    m = re.fullmatch(r"absent\s*\((.*)\)", expr, re.S)
    if m:
        return [m.group(1).strip()]
    lhs = _unwrap(_without_comparison(expr))
    if lhs != expr and len(_split_set_operators(lhs)) > 1:
        return alert_left_hand_sides(lhs)
    return [lhs]


def test_left_hand_sides_are_read_as_meant():
    assert alert_left_hand_sides('up{job="a"} == 0') == ['up{job="a"}']
    assert alert_left_hand_sides('x{le="0.5",a!="b"} >= (14.4 * 0.01)') == ['x{le="0.5",a!="b"}']
    assert alert_left_hand_sides("(a > 1 and b > 2) or (c > 3 and d > 4)") == ["a", "b", "c", "d"]
    assert alert_left_hand_sides("max by (j) (l) > 0 and on (j) sum by (j) (rate(x[5m])) == 0") \
        == ["max by (j) (l)", "sum by (j) (rate(x[5m]))"]
    assert alert_left_hand_sides('absent(up{job="a"}) or absent(up{job="b"})') \
        == ['up{job="a"}', 'up{job="b"}']
    assert alert_left_hand_sides('(s(x{s=~"5.."}) or s(x) * 0) / s(x) > 0.05') \
        == ['(s(x{s=~"5.."}) or s(x) * 0) / s(x)']


# ---- the files alone ----

@pytest.mark.nostack
def test_promtool_checks_the_rules():
    r = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.nostack
def test_promtool_unit_tests_of_the_rules_pass():
    r = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                       text=True, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.nostack
def test_the_example_configuration_scrapes_the_local_stack():
    """monitoring/prometheus/prometheus.yml passes promtool and scrapes every daemon of
    `make run` (base 17000, three gateways) under the job names the rules expect."""
    path = RULES.parent / "prometheus.yml"
    r = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = {j["job_name"]: [t for c in j["static_configs"] for t in c["targets"]]
            for j in yaml.safe_load(path.read_text())["scrape_configs"]}
    want = {}
    for d in SPEC:
        offset = next(p["offset"] for p in d["ports"] if p["role"] == d["health"])
        n = min(3, d["instances"]) if d.get("instances", 1) > 1 else 1
        want[JOBS[d["name"]]] = [f"127.0.0.1:{17000 + offset + i}" for i in range(n)]
    assert jobs == want


@pytest.mark.nostack
def test_every_alert_has_its_labels_annotations_and_runbook_section():
    ops = (ROOT / "docs" / "operations.md").read_text()
    anchors = set()
    for line in ops.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", title)))
    alerts = [r for r in rules() if "alert" in r]
    assert len({r["alert"] for r in alerts}) == len(alerts)
    for r in alerts:
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        url = r["annotations"]["runbook_url"]
        anchor = url.split("#", 1)[1]
        assert url.split("#")[0].endswith("/docs/operations.md"), url
        assert anchor == "alert-" + r["alert"].lower(), url
        assert anchor in anchors, f"docs/operations.md has no heading for #{anchor}"
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert {r["alert"] for r in alerts} <= tested, "alerts without a promtool unit test"


@pytest.mark.nostack
def test_dashboards_are_what_the_script_writes():
    spec = importlib.util.spec_from_file_location("kchat_dashboards", DASHBOARD_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert set(mod.DASHBOARDS) == set(dashboards())
    for name in mod.DASHBOARDS:
        assert (DASHBOARD_DIR / f"{name}.json").read_text() == mod.text(name), (
            f"{name}.json differs from what monitoring/grafana/dashboards.py writes: run it")


@pytest.mark.nostack
def test_dashboards_are_well_formed():
    boards = dashboards()
    for want in ("overview", "gateway", "processor", "projector", "api", "kafka-lag",
                 "read-models"):
        assert want in boards
    assert len({d["uid"] for d in boards.values()}) == len(boards)
    for name, d in boards.items():
        assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36, name
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps another panel"
                    cells.add((x, y))
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert p["targets"], f"{name}: {p['title']} has no query"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs))
            for t in p["targets"]:
                assert t["expr"].strip() and t["datasource"] == p["datasource"]
            for v in re.findall(r"\$(\w+)", " ".join(t["expr"] for t in p["targets"])):
                assert v in variables or "$" + v in SUBSTITUTIONS, f"{name}: ${v} undefined"


@pytest.mark.nostack
def test_every_dashboard_query_parses(tmp_path):
    """promtool parses each query (as a recording rule) with the variables substituted."""
    recorded = [{"record": f"dashboard:query:n{i}", "expr": expr}
                for i, (_, _, _, expr) in enumerate(panel_queries())]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": recorded}]}))
    r = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- against the running stack ----

def scrape_targets():
    """{job: [host:port of every instance's /metrics]} of the test stack."""
    ngateways = NGATEWAYS
    out = {}
    for d in SPEC:
        port = int(ENV[next(p["variable"] for p in d["ports"] if p["role"] == d["health"])])
        n = min(ngateways, d["instances"]) if d.get("instances", 1) > 1 else 1
        out[JOBS[d["name"]]] = [f"127.0.0.1:{port + i}" for i in range(n)]
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """Debian's prometheus on 127.0.0.1:KCHAT_PORT_BASE + 390, scraping every daemon of the
    stack each second with alerts.yml loaded; yields its base URL and stops it at the end."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus (Debian package prometheus) is installed by scripts/deps.sh --test"
    port = int(ENV["KCHAT_PORT_BASE"]) + PROMETHEUS_PORT_OFFSET
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is already in use"
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in scrape_targets().items()],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(folder / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={folder / 'prometheus.yml'}",
                             f"--storage.tsdb.path={folder / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or http_get(base + "/-/ready")[0] == 200,
                   "prometheus ready", timeout=60)
        assert proc.poll() is None, (folder / "prometheus.log").read_text()[-3000:]
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def query(base, expr):
    status, _, body = http_get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                               timeout=10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", (expr, body[:500])
    return answer["data"]["result"]


def put_traffic_through_the_stack():
    """Two users register and log in, open a conversation over REST, chat over WebSocket on
    every gateway (a retry, read receipts, typing), then read history and their lists, and a
    client marks as read a message that does not exist (the processor rejects it). Then one
    of them, gone offline, is told of a mention by Web Push (notify_an_offline_member)."""
    a, b = User(), User()
    r = a.post("/conversations", {"title": "monitoring", "members": [b.id]})
    assert r.status == 201, r
    convo = r.json["id"]
    gateway_port = int(ENV["KCHAT_GATEWAY_PORT"])
    ngateways = NGATEWAYS

    async def chat():
        sockets = []
        for i in range(ngateways):
            user = (a, b)[i % 2]
            sockets.append(await websockets.connect(
                f"ws://127.0.0.1:{gateway_port + i}/ws",
                additional_headers={"Authorization": "Bearer " + user.token}, max_size=None))

        async def acked(ws, client_msg_id):
            while True:
                f = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if f.get("type") == "ack" and f.get("client_msg_id") == client_msg_id:
                    return f

        seq = 0
        for n in range(5):
            for i, ws in enumerate(sockets):
                mid = f"mon-{i}-{n}-{uuid.uuid4().hex[:8]}"
                await ws.send(json.dumps({"type": "message.send", "convo_id": convo,
                                          "client_msg_id": mid, "content": f"hello {n}"}))
                ack = await acked(ws, mid)
                assert ack["status"] == "ok", ack
                seq = max(seq, ack["seq_no"])
                if n == 0:  # a retry of an acked message: a duplicate
                    await ws.send(json.dumps({"type": "message.send", "convo_id": convo,
                                              "client_msg_id": mid, "content": f"hello {n}"}))
                    assert (await acked(ws, mid))["status"] == "duplicate"
        await sockets[0].send(json.dumps({"type": "typing.start", "convo_id": convo}))
        await sockets[-1].send(json.dumps({"type": "message.read", "convo_id": convo,
                                           "seq_no": seq}))
        await asyncio.sleep(1)
        for ws in sockets:
            await ws.close()
        return seq

    seq = asyncio.run(chat())
    wait_until(lambda: b.get(f"/conversations/{convo}").json.get("last_seq") == seq,
               "the last message projected", timeout=30)
    for user in (a, b):
        assert user.get(f"/conversations/{convo}/messages?limit=50").status == 200
        assert user.get(f"/conversations/{convo}/messages?limit=2&before_seq=5").status == 200
        assert user.get("/conversations").status == 200
    r = b.post(f"/conversations/{convo}/read", {"seq_no": seq + 100})
    assert (r.status, r.code) == (400, "no_such_message"), r
    notify_an_offline_member(a, b, convo)


def notify_an_offline_member(a, b, convo):
    """b, whose sockets are closed, subscribes to Web Push at a local push service
    (kchat_testkit.push; the stack's API takes its http:// endpoint) and a mentions b: the
    stack's notifier sends b one push at once (a mention is not coalesced), so its sent,
    latency and claim series have data."""
    from kchat_testkit.gateway import redis_client
    from kchat_testkit.push import PushService

    push = PushService()
    try:
        sub = push.subscription(f"monitoring-{uuid.uuid4().hex[:8]}")
        r = b.post("/push/subscriptions", sub.body())
        assert r.status == 201, r
        redis = redis_client()
        wait_until(lambda: not any(int(v) > time.time() * 1000
                                   for v in redis.hgetall(f"kchat:route:{b.id}").values()),
                   "b's routes gone with the sockets", timeout=30)

        async def mention():
            async with websockets.connect(f"ws://127.0.0.1:{ENV['KCHAT_GATEWAY_PORT']}/ws",
                                          additional_headers={"Authorization": "Bearer " + a.token}) as ws:
                mid = f"mon-mention-{uuid.uuid4().hex[:8]}"
                await ws.send(json.dumps({"type": "message.send", "convo_id": convo,
                                          "client_msg_id": mid, "content": f"@{b.name} look"}))
                while True:
                    f = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    if f.get("type") == "ack" and f.get("client_msg_id") == mid:
                        assert f["status"] == "ok", f
                        return

        asyncio.run(mention())
        path = "/" + sub.endpoint.split("/", 3)[3]
        wait_until(lambda: push.taken(path), "the notifier's push to b", timeout=60)
    finally:
        push.close()


def has_data(result):
    """Whether a query's result has a series with a number (NaN, the 0/0 of a rate over a
    window without events, draws nothing)."""
    return any(r["value"][1] not in ("NaN", "+Inf", "-Inf") for r in result)


def empty_queries(base, queries):
    return [(where, expr) for where, expr in queries if not has_data(query(base, expr))]


def test_every_panel_and_rule_has_data_on_the_running_stack(prometheus):
    def scraped():
        targets = json.loads(http_get(prometheus + "/api/v1/targets")[2])["data"]
        targets = targets["activeTargets"]
        return ({t["labels"]["job"] for t in targets} == set(JOBS.values())
                and all(t["health"] == "up" for t in targets))

    wait_until(scraped, "every daemon of the stack scraped by Prometheus", timeout=30)

    put_traffic_through_the_stack()

    queries = [(f"dashboard {d} / {title} / {ref}", expr)
               for d, title, ref, expr in panel_queries()]
    for r in rules():
        if "record" in r:
            queries.append((f"recording rule {r['record']}", r["expr"]))
            queries.append((f"recorded series {r['record']}", r["record"]))
        elif r["alert"] not in NOT_FROM_KCHAT:
            for lhs in alert_left_hand_sides(r["expr"]):
                queries.append((f"alert {r['alert']}", lhs))

    def unexplained(empty):
        return [(where, expr) for where, expr in empty
                if not any(m in expr for m in CREATED_ON_FIRST_USE)]

    # The recording groups run every 30 s: the last of them is in within a minute or so.
    deadline = time.monotonic() + 120
    while True:
        empty = empty_queries(prometheus, queries)
        if not unexplained(empty) or time.monotonic() > deadline:
            break
        time.sleep(2)

    for where, expr in empty:
        metric = next((m for m in CREATED_ON_FIRST_USE if m in expr), None)
        if metric:
            print(f"empty on a fresh stack: {where}: {metric} ({CREATED_ON_FIRST_USE[metric]})")
    assert not unexplained(empty), "queries without data:\n" + "\n".join(
        f"  {where}: {expr}" for where, expr in unexplained(empty))

    groups = json.loads(http_get(prometheus + "/api/v1/rules")[2])["data"]["groups"]
    failing = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"]
               if r["health"] != "ok"]
    assert not failing, f"rules Prometheus could not evaluate: {failing}"
