"""Every daemon's /metrics is valid Prometheus text: promtool accepts it."""
import shutil
import subprocess

import pytest

from kchat_testkit.http import http_get
from kchat_testkit.metrics import metric
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
