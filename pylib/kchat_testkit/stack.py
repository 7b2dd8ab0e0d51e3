"""The stack the system tests and the benchmarks run against: this tree, its build, the
daemons and where they listen. The daemons, their binaries and their ports are
scripts/daemons.json's; every address comes from the KCHAT_* variables of scripts/env.sh,
set by scripts/test.sh (or bench/run.sh) before Python starts."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KCHAT_BUILD_DIR", ROOT / "build"))
ENV = os.environ
SPEC = json.loads((ROOT / "scripts" / "daemons.json").read_text())["daemons"]
# How many gateways the stack runs: KCHAT_GATEWAYS, or scripts/stack.sh's default of 1
# (scripts/test.sh and scripts/chaos.sh ask for 3).
NGATEWAYS = int(ENV.get("KCHAT_GATEWAYS", "1"))


def daemon_table(env=ENV, build=BUILD):
    """{name: {"binary": path, "health": base URL of /health and /metrics}} of every daemon
    (the first instance of a daemon that runs several), its port taken from env."""
    out = {}
    for d in SPEC:
        port = next(p for p in d["ports"] if p["role"] == d["health"])
        out[d["name"]] = {"binary": build / d["binary"],
                          "health": f"http://127.0.0.1:{env.get(port['variable'])}"}
    return out


def instance_names(gateways=None):
    """Every daemon instance as scripts/stack.sh names them, in its order: a daemon that runs
    several (the gateways: NGATEWAYS) as name, name1, name2..."""
    if gateways is None:
        gateways = NGATEWAYS
    names = []
    for d in SPEC:
        n = min(gateways, d["instances"]) if d.get("instances", 1) > 1 else 1
        names += [d["name"]] + [f"{d['name']}{i}" for i in range(1, n)]
    return names


def gateway_addresses(gateways=None):
    """host:port of every gateway's WebSocket listener, comma-separated (the load
    generator's --gateways): KCHAT_GATEWAY_PORT + N for gateway N."""
    if gateways is None:
        gateways = NGATEWAYS
    port = int(ENV["KCHAT_GATEWAY_PORT"])
    return ",".join(f"127.0.0.1:{port + i}" for i in range(gateways))


DAEMONS = daemon_table()


def psql(sql, *args):
    """Runs one statement through psql (an independent client) and returns the rows."""
    cmd = ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", ENV["KCHAT_PG_DSN"], "-c", sql]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]
