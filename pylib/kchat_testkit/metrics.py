"""One scraper of a daemon's /metrics: the Prometheus text format, version 0.0.4."""
from .http import http_get


def scrape(base, timeout=5):
    """The text of base + "/metrics" (base: a daemon's http://host:port); fails on a status
    other than 200."""
    status, _, body = http_get(base + "/metrics", timeout=timeout)
    if status != 200:
        raise AssertionError(f"{base}/metrics answered {status}: {body[:200]!r}")
    return body.decode()


def sample(text, series, default=0.0):
    """The value of one series in Prometheus text: series is a metric name with its labels
    as the daemon writes them (kchat_x_total or kchat_x_total{kind="y"}); default when the
    text has no such series."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return default


def samples(text, prefix):
    """{series: value} of every series whose name starts with prefix."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and " " in line and not line.startswith("#")}


def metric(base, name, labels="", default=0.0):
    """One series of a daemon's /metrics, scraped now: name{labels} (labels as written, e.g.
    'status="ok"'), default when absent."""
    return sample(scrape(base), name + ("{" + labels + "}" if labels else ""), default)
