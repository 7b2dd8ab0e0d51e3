"""The system tests' pytest fixtures: the running stack's addresses. tests/system/conftest.py
imports them (`from kchat_testkit.fixtures import *`), so every test folder below it has them."""
import pytest

from .stack import ENV

__all__ = ["brokers", "pg_dsn", "redis_port"]


@pytest.fixture(scope="session")
def brokers():
    return ENV["KCHAT_KAFKA_BROKERS"]


@pytest.fixture(scope="session")
def pg_dsn():
    return ENV["KCHAT_PG_DSN"]


@pytest.fixture(scope="session")
def redis_port():
    return int(ENV["KCHAT_REDIS_PORT"])
