"""The stack the system tests and the benchmarks run against: this tree, its build, the
daemons and where they listen. Every address comes from the KCHAT_* variables of
scripts/env.sh, set by scripts/test.sh (or bench/run.sh) before Python starts."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("KCHAT_BUILD_DIR", ROOT / "build"))
ENV = os.environ

DAEMONS = {
    "processor": {"binary": BUILD / "processor" / "kchat-processor",
                  "health": f"http://127.0.0.1:{ENV.get('KCHAT_PROCESSOR_ADMIN_PORT')}"},
    "projector": {"binary": BUILD / "projector" / "kchat-projector",
                  "health": f"http://127.0.0.1:{ENV.get('KCHAT_PROJECTOR_ADMIN_PORT')}"},
    "gateway": {"binary": BUILD / "gateway" / "kchat-gateway",
                "health": f"http://127.0.0.1:{ENV.get('KCHAT_GATEWAY_ADMIN_PORT')}"},
    "api": {"binary": BUILD / "api" / "kchat-api",
            "health": f"http://127.0.0.1:{ENV.get('KCHAT_API_PORT')}"},
}


def psql(sql, *args):
    """Runs one statement through psql (an independent client) and returns the rows."""
    cmd = ["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", ENV["KCHAT_PG_DSN"], "-c", sql]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]
