"""Shared fixtures for the system tests, in every folder below this one.

The stack (Kafka, Postgres, Redis, the four daemons) is started by scripts/test.sh before
pytest runs; its addresses come from the same environment (scripts/env.sh). The fixtures and
helpers are kchat_testkit's (pylib/, shared with bench/), put on sys.path here.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "pylib"))

from kchat_testkit.fixtures import *  # noqa: E402,F401,F403


def pytest_configure(config):
    config.addinivalue_line("markers", "nostack: needs no running stack (runs in seconds)")


def pytest_collection_modifyitems(session, config, items):
    """The fault run last: it kills and restarts the stack's processes and flushes Redis, and
    every other test should meet the stack as scripts/test.sh started it."""
    items.sort(key=lambda item: "/chaos/" in str(item.fspath))
