"""The short version of the fault runner (tests/chaos/kchat_chaos.py; `make chaos` runs the long
one on a stack of its own): a minute of load over the public protocol on the test stack while a
seeded schedule kills, pauses and restarts its processes, then the checker. Its report goes to
$KCHAT_STATE_DIR/chaos (report.txt, report.json). KCHAT_CHAOS_SEED replays another schedule.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "chaos"))

import kchat_chaos  # noqa: E402


def test_acked_messages_survive_a_seeded_fault_schedule():
    seed = int(os.environ.get("KCHAT_CHAOS_SEED", "11"))
    args = kchat_chaos.parse(["--seed", str(seed), "--duration", "60", "--users", "6",
                              "--faults", "6"])
    rep, text = kchat_chaos.run(args)
    print(text)
    assert rep["counts"]["acked"] > 100, text
    assert rep["faults"], text
    assert rep["ok"], text
