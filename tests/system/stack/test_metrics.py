"""Every daemon's /metrics is valid Prometheus text: promtool accepts it."""
import shutil
import subprocess

import pytest

from kchat_testkit.api import User
from kchat_testkit.http import http_get, wait_until
from kchat_testkit.metrics import metric, samples, scrape
from kchat_testkit.stack import DAEMONS


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
    assert "kchat_kafka_brokers_up{client=" in text
    if name != "api":  # every daemon with a consumer reports how far behind it is
        assert "kchat_kafka_consumer_lag_messages{client=" in text
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


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
