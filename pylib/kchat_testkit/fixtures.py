"""The system tests' pytest fixtures: the running stack's addresses, a producer of commands
and two users of the API. tests/system/conftest.py imports them (`from kchat_testkit.fixtures
import *`), so every test folder below it has them."""
import pytest

from .api import User
from .stack import ENV
from .wire import Commands

__all__ = ["brokers", "pg_dsn", "redis_port", "commands", "alice", "bob"]


@pytest.fixture(scope="session")
def brokers():
    return ENV["KCHAT_KAFKA_BROKERS"]


@pytest.fixture(scope="session")
def pg_dsn():
    return ENV["KCHAT_PG_DSN"]


@pytest.fixture(scope="session")
def redis_port():
    return int(ENV["KCHAT_REDIS_PORT"])


@pytest.fixture(scope="module")
def commands(brokers):
    return Commands(brokers)


@pytest.fixture(scope="module")
def alice():
    return User()


@pytest.fixture(scope="module")
def bob():
    return User()
