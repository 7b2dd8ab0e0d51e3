"""Every daemon's /metrics is valid Prometheus text: promtool accepts it. It exports its
health checks and readiness as /health states them, and the counters documented as there
from the start have a series for each label value docs/operations.md lists."""
import json
import re
import shutil
import subprocess

import pytest

from kchat_testkit.api import User
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.metrics import metric, sample, samples, scrape
from kchat_testkit.stack import DAEMONS, ROOT


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_metrics_pass_promtool(name):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by scripts/deps.sh --test"
    status, headers, body = http_get(DAEMONS[name]["health"] + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert f'kchat_build_info{{service="{name}",version=' in text
    assert "process_resident_memory_bytes " in text
    if name != "registry":  # the registry reads files only
        assert "kchat_kafka_brokers_up{client=" in text
    if name not in ("api", "registry"):  # every daemon with a consumer reports its lag
        assert "kchat_kafka_consumer_lag_messages{client=" in text
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_health_checks_and_readiness_are_exported(name):
    """kchat_health_check_up has one series per check of /health, 1 where it is ok, and
    kchat_ready is 1 when /health answers 200."""
    base = DAEMONS[name]["health"]
    status, _, body = http_get(base + "/health")
    checks = json.loads(body)["checks"]
    text = scrape(base)
    assert samples(text, "kchat_health_check_up{") == {
        f'kchat_health_check_up{{check="{c}"}}': 1.0 if v["ok"] else 0.0
        for c, v in checks.items()}
    assert sample(text, "kchat_ready", default=None) == (1.0 if status == 200 else 0.0)


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_live_answers_whatever_the_dependencies_and_refuses_other_methods(name):
    base = DAEMONS[name]["health"]
    status, headers, body = http_get(base + "/live")
    assert (status, json.loads(body)) == (200, {"status": "live"})
    assert headers["Content-Type"].startswith("application/json")
    assert http_get(base + "/live", method="POST", data=b"")[0] == 405
    assert sample(scrape(base), 'kchat_admin_requests_total{path="/live"}') >= 1


def documented_from_the_start():
    """(daemon, series) of every row of docs/operations.md's "## Metrics" table that says
    its series are there from the start: one series per label value the row lists."""
    ops = (ROOT / "docs" / "operations.md").read_text()
    table = ops.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    out = []
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) != 5 or "from the start" not in cells[4]:
            continue
        name = cells[0].strip("`")
        m = re.fullmatch(r"`(\w+)` \((.*)\)", cells[2])
        series = ([f'{name}{{{m.group(1)}="{v}"}}' for v in re.findall(r"`([^`]+)`", m.group(2))]
                  if m else [name])
        out += [(cells[3], s) for s in series]
    return out


def test_counters_documented_as_there_from_the_start_are():
    rows = documented_from_the_start()
    assert {d for d, _ in rows} >= {"gateway", "processor", "api"}, rows
    text = {name: scrape(DAEMONS[name]["health"]) for name in {d for d, _ in rows}}
    missing = [(d, s) for d, s in rows if sample(text[d], s, default=None) is None]
    assert not missing, missing


def test_metrics_count_scrapes():
    def scrapes():
        n = metric(DAEMONS["processor"]["health"], "kchat_admin_requests_total",
                   'path="/metrics"', default=None)
        assert n is not None, "no kchat_admin_requests_total for /metrics"
        return n

    first = scrapes()
    assert scrapes() == first + 1



def test_consumer_lag_is_counted_from_the_position_and_settles_at_zero():
    """kchat_kafka_consumer_lag_messages counts from each consumer's position, not from a
    committed offset: the processor commits in its transactions and the projector never
    commits to Kafka, yet both read everything that is there, so once the stack is idle
    every consumer's lag is 0 (counted from committed offsets, the processor's only grew)."""
    a, b = User(), User()
    r = a.post("/conversations", {"title": "lag", "members": [b.id]})
    assert r.status == 201, r  # a command through the processor, its events to the projector

    def lags():
        out = {}
        for name in ("processor", "projector", "gateway"):
            for series, value in samples(scrape(DAEMONS[name]["health"]),
                                         "kchat_kafka_consumer_lag_messages").items():
                out[f"{name} {series}"] = value
        return out

    wait_until(lambda: lags() and all(v == 0 for v in lags().values()),
               "every consumer's lag at 0 once the stack is idle", timeout=60)
