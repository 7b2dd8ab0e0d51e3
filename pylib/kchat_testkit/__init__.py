"""kchat's Python test kit: what the system tests (tests/system) and the benchmarks (bench/)
share.

  stack     the tree, the build, the daemons and where the running stack listens
  http      a urllib client that never raises on HTTP errors, wait_until, free_port
  metrics   one scraper of a daemon's /metrics (Prometheus text)
  daemon    one way to run a daemon binary beside the stack and wait for its /health
  wire      kchat's topics from outside: Confluent-framed Avro, commands, topic readers
  gateway   WebSocket clients of the gateways, tokens, extra gateways
  api       a client of kchat-api
  fixtures  the pytest fixtures (tests/system/conftest.py imports them)

It is a folder on sys.path, not an installed package: tests/system/conftest.py and the bench
scripts put pylib/ first on sys.path, so `import kchat_testkit` works from pytest and from
`.venv/bin/python bench/run.py` alike, with nothing to install. Importing the package imports
none of its modules: each takes only what it needs (wire needs fastavro and confluent-kafka,
gateway a running stack's keys).
"""
