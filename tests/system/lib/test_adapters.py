"""lib/'s Postgres and Redis adapters work on the loop against the real servers."""
import json
import os
import subprocess

from kchat_testkit.stack import BUILD


def test_pg_and_redis_adapters(pg_dsn, redis_port):
    out = subprocess.run([str(BUILD / "tests" / "tools" / "kc-adapters-check"),
                          f"--pg-dsn={pg_dsn}", "--redis-host=127.0.0.1",
                          f"--redis-port={redis_port}", "--redis-timeout-ms=300"],
                         capture_output=True, text=True, timeout=90, env=os.environ)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    # Parameters travel as data, never as SQL.
    assert r["pg_params"] == {"error": "", "row": ["42", "héllo'; DROP TABLE users; --"]}
    assert r["pg_missing_table"]["sqlstate"] == "42P01"
    # One statement per call: a second one is refused by the server.
    assert r["pg_two_statements"]["sqlstate"] == "42601"
    assert r["redis_set"]["str"] == "OK"
    assert r["redis_get"]["binary_equal"] is True
    # A command slower than the timeout fails, the connection is made again and works.
    assert r["redis_slow_command"]["error"] == "command timed out"
    assert r["redis_after_reconnect"] == {"error": "", "len": 4, "binary_equal": False,
                                          "str": "PONG"}
    # LISTEN on two channels of one connection: each notification reaches its own callback
    # (the API listens for outcomes and for the account outbox on one connection)
    assert r["pg_listen_twice"] == -17  # -EEXIST
    assert r["pg_notified"] == {"kc_check_a": "to a", "kc_check_b": "to b"}
    assert r["loop_closed_cleanly"] is True
    assert "redis connection lost: command timed out" in out.stderr
