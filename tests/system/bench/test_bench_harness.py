"""bench/run.py's bookkeeping, without load: the CPU of a process tree (children that ended
included), the stack's processes by name, the broker's requests per chat message, which
results fail a run (errors and the load generator's checks, never a timing or a ratio), and
the tables that compare runs. No timing is asserted."""
import importlib.util
import os
import subprocess
import sys

from kchat_testkit.stack import ROOT

ENV = os.environ


def load_run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


run = load_run()


def test_a_tree_counts_the_cpu_of_children_that_ended():
    me = os.getpid()
    before = run.cpu_snapshot({"me": me})["me"]
    # a child that spends 0.2 s of CPU and is waited for before the second reading
    subprocess.run([sys.executable, "-c",
                    "import time\nwhile time.process_time() < 0.2: pass"], check=True)
    after = run.cpu_snapshot({"me": me})["me"]
    assert after["pid"] == me
    # (/proc counts in clock ticks, truncated)
    assert after["cpu_s"] - before["cpu_s"] >= 0.15


def test_a_tree_counts_its_live_children():
    child = subprocess.Popen(["sleep", "30"])
    try:
        snap = run.cpu_snapshot({"me": os.getpid()})
        assert snap["me"]["processes"] >= 2
    finally:
        child.kill()
        child.wait()


def test_the_stack_is_counted_process_by_process():
    snap = run.cpu_snapshot()
    for name in ("processor", "projector", "api", "gateway", "kafka", "postgres", "redis"):
        assert name in snap, (name, sorted(snap))
    # the postmaster with its auxiliary processes and the daemons' connections
    assert snap["postgres"]["processes"] > 1
    used = run.cpu_delta(snap, run.cpu_snapshot())
    assert set(used) == set(snap) and all(v >= 0 for v in used.values())


def test_a_restarted_process_is_left_out_of_a_delta():
    a = {"x": {"pid": 1, "cpu_s": 5.0, "processes": 1},
         "y": {"pid": 2, "cpu_s": 1.0, "processes": 1}}
    b = {"x": {"pid": 3, "cpu_s": 0.5, "processes": 1},
         "y": {"pid": 2, "cpu_s": 1.5, "processes": 1}}
    assert run.cpu_delta(a, b) == {"y": 0.5}


def test_cpu_figures_per_process_and_in_total():
    a = {n: {"pid": i, "cpu_s": 0.0, "processes": 1} for i, n in enumerate(
        ["processor", "kafka", "postgres", "redis"])}
    b = {n: dict(v, cpu_s=s) for (n, v), s in zip(a.items(), (1.0, 2.0, 0.5, 0.5))}
    f = run.cpu_figures(a, b, 2000)
    assert f["cpu_seconds_total"] == 4.0
    assert f["cpu_us_per_delivery"]["kafka"] == 1000.0
    assert f["cpu_us_per_delivery_total"] == 2000.0
    assert f["deliveries_per_cpu_second"] == 500
    assert f["cpu_seconds_kchat_and_broker"] == 3.0
    assert f["deliveries_per_cpu_second_kchat_and_broker"] == 667


def test_requests_per_message():
    req0 = {"Produce": 100, "Fetch": 50, "FetchConsumer": 50, "EndTxn": 1, "BrokerHeartbeat": 10}
    req1 = {"Produce": 300, "Fetch": 160, "FetchConsumer": 140, "EndTxn": 11,
            "AddPartitionsToTxn": 20, "WriteTxnMarkers": 10, "BrokerHeartbeat": 30, "Metadata": 4}
    f = run.request_figures(req0, req1, 100)
    assert f["kafka_requests"]["Produce"] == 200
    per = f["kafka_requests_per_message"]
    assert per["produce"] == 2.0
    assert per["fetch"] == 0.9  # the consumers' fetches, not the follower's
    assert per["transactional"] == 0.4
    # every client request; the controller's heartbeats and the follower fetches left out
    assert per["total"] == 3.34
    assert run.request_figures(None, None, 100)["kafka_requests"] is None


def loadgen_summary(passed=True, rate=400, p99=50.0, **check):
    c = {"pass": passed, "lost": 0, "duplicates": 0, "out_of_order": 0, "unacked": 0}
    c.update(check)
    lat = {"p50_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 * 2}
    return {"check": c,
            "params": {"connections": 200, "group": 2, "rate": rate},
            "results": {"acked": rate * 10, "acked_per_s": rate, "deliveries": rate * 10,
                        "deliveries_per_s": rate, "connections_failed": 0, "send_failed": 0,
                        "ack_errors": 0, "connections_closed_early": 0,
                        "ack_latency": lat, "delivery_latency": lat},
            "kafka_records_per_message": 6.0}


def test_slow_runs_pass_and_lost_messages_fail():
    slow = loadgen_summary(p99=9000.0)
    assert run.failures({"one2one": slow, "history": {"skipped": "no wrk"}}) == []
    unacked = loadgen_summary(False, unacked=3)
    lost = loadgen_summary(False, lost=2)
    # at equal load a message never acked fails the run
    assert run.failures({"one2one": unacked}) == ["one2one: check failed: unacked 3"]
    assert run.failures({"groups": lost}) == ["groups: check failed: lost 2"]
    # at a ramp step beyond what is sustained, only loss, duplicates or disorder do
    steps = [{"rate": 8000, "integrity_problems": [], "check": False},
             {"rate": 16000, "integrity_problems": ["duplicates 1"], "check": False}]
    assert run.failures({"ramp": {"steps": steps}}) == [
        "ramp at 16000 msg/s: check failed: duplicates 1"]
    assert run.check_problems(unacked, integrity_only=True) == []


def test_errors_fail_the_run():
    res = {"replay": {"error": "no projector"},
           "one2one": dict(loadgen_summary(), kafka_requests_error="JmxTool: refused"),
           "peers": {"systems": {"kchat": {"check_problems": [], "ramp": []},
                                 "centrifugo": {"error": "not installed"}}}}
    assert run.failures(res) == ["replay: error: no projector",
                                 "one2one: the broker's request counters: JmxTool: refused",
                                 "peers centrifugo: error: not installed"]


def test_a_peer_losing_messages_is_a_finding_not_a_failure():
    """A peer that loses messages past its limit (Centrifugo at a step it cannot sustain) is
    reported beside its figures; kchat losing one fails the run."""
    lossy = [{"rate": 32000, "integrity_problems": ["lost 9448"], "check": False}]
    res = {"peers": {"systems": {
        "kchat": {"check_problems": [], "ramp": []},
        "centrifugo": {"check_problems": [], "ramp": lossy}}}}
    assert run.failures(res) == []
    assert run.peer_findings(res) == ["centrifugo ramp at 32000 msg/s: lost 9448"]
    res["peers"]["systems"]["kchat"]["ramp"] = lossy
    assert run.failures(res) == ["peers kchat ramp at 32000 msg/s: check failed: lost 9448"]


def test_baseline_vs_current_gives_ratios():
    def result(rate, p99, cpu_us):
        s = loadgen_summary(rate=rate, p99=p99)
        s.update(cpu_us_per_delivery={"kafka": cpu_us}, cpu_us_per_delivery_total=cpu_us,
                 kafka_requests_per_message={"produce": 2.0, "fetch": 1.0,
                                             "transactional": 0.5, "total": 4.0})
        return {"commit": "abc", "one2one": s,
                "ramp": {"steps": [], "max_sustained_per_s": rate}}

    table = run.comparison(dict(result(400, 100.0, 500.0), name="HEAD~1"),
                           result(400, 50.0, 250.0))
    assert "| one2one: ack p99 ms | 100.0 | 50.0 | 0.50 |" in table
    assert "| one2one: CPU µs per delivery, kafka | 500.0 | 250.0 | 0.50 |" in table
    assert "| one2one: broker requests/msg, total | 4.00 | 4.00 | 1.00 |" in table
    assert "| ramp: highest sustained msg/s | 400 | 400 | 1.00 |" in table
    assert "baseline HEAD~1 (abc)" in table


def test_kchat_to_each_peer():
    def row(dps, with_redis, p500, mem):
        return {"deliveries_per_cpu_second": dps, "deliveries_per_cpu_second_with_redis":
                with_redis, "max_per_s_p99_under_500ms": p500, "max_per_s_p99_under_50ms": 0,
                "ack_latency": {"p50_ms": 2.0, "p99_ms": 4.0}, "server_bytes_per_idle_conn": mem}

    k = dict(row(1000, 800, 4000, 6000), deliveries_per_cpu_second_whole_stack=600)
    text = run.peer_ratios({"peers": {"systems": {
        "kchat": k, "centrifugo": row(4000, 2000, 16000, 40000),
        "socketio": {"error": "not installed"}}}})
    assert "kchat / centrifugo" in text and "socketio" not in text
    assert "| deliveries per CPU second, servers alone | 1 000 | 4 000 | 0.25 |" in text
    assert "| deliveries per CPU second, with Redis | 800 | 2 000 | 0.40 |" in text
    assert "kchat's whole stack / the peer with Redis | 600 | 2 000 | 0.30 |" in text
    # no peer step within 50 ms: no ratio rather than a division by zero
    assert "| msg/s sustained with ack p99 ≤ 50 ms | 0 | 0 |  |" in text


def test_kafka_sh_refuses_a_jmx_port_that_is_not_one(tmp_path):
    env = dict(ENV, KCHAT_STATE_DIR=str(tmp_path), KCHAT_KAFKA_JMX_PORT="jmx")
    r = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "start"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "KCHAT_KAFKA_JMX_PORT must be a port number" in r.stderr
    assert not (tmp_path / "kafka" / "kafka.pid").exists()


def cost_window(rate, cores, txn=40.0, problems=()):
    return {"rate": rate, "seconds": 10.0, "messages": rate * 10, "cores": cores,
            "transactions_per_s": txn, "requests_per_s": {"Produce": rate * 1.0, "EndTxn": txn},
            "check": not problems, "check_problems": list(problems)}


def test_costs_split_what_a_message_costs_from_what_a_transaction_costs():
    # a broker at 0.05 cores idle, 0.30 cores whatever the rate, 50 µs a message; a gateway
    # with nothing fixed and 100 µs a message; one window of each rate an outlier
    def cores(rate, outlier=0.0):
        return {"kafka": 0.05 + 0.30 + rate * 50e-6 + outlier, "gateway": 0.01 + rate * 100e-6}
    idle = cost_window(0, {"kafka": 0.05, "gateway": 0.01}, txn=0.0)
    wins = {400: [cost_window(400, cores(400)), cost_window(400, cores(400, 0.5)),
                  cost_window(400, cores(400))],
            2000: [cost_window(2000, cores(2000)), cost_window(2000, cores(2000)),
                   cost_window(2000, cores(2000, -0.2))]}
    c = run.cost_figures(idle, wins, 400, 2000)
    assert c["messages_per_s"] == {"400": 400, "2000": 2000}
    k, g = c["processes"]["kafka"], c["processes"]["gateway"]
    assert abs(k["marginal_us_per_message"] - 50.0) < 0.2 and abs(k["fixed_above_idle"] - 0.30) < 1e-3
    assert abs(g["marginal_us_per_message"] - 100.0) < 0.2 and abs(g["fixed_above_idle"]) < 1e-3
    assert abs(c["fixed_ms_per_transaction"] - 7.5) < 0.05  # 0.30 cores over 40 transactions/s
    assert c["requests_per_s"]["Produce"] == {"idle": 0, "400": 400.0, "2000": 2000.0}
    assert c["check"] is True and run.failures({"costs": c}) == []
    text = run.summary({"costs": c})
    assert "| kafka | 0.050 | 0.370 | 0.450 | 50.0 | 0.300 |" in text
    # a window that lost a message fails the run
    wins[2000][1] = cost_window(2000, cores(2000), problems=("lost 1",))
    assert run.failures({"costs": run.cost_figures(idle, wins, 400, 2000)}) == [
        "costs: check failed: lost 1"]


def test_the_brokers_pauses_are_read_from_its_gc_log(tmp_path):
    log = tmp_path / "kafka-gc.log"
    log.write_text(
        "[1.061s][info][gc] Using Parallel\n"
        "[1.443s][info][gc] GC(2) Pause Full (Metadata GC Threshold) 8M->8M(155M) 29.546ms\n"
        "[9.451s][info][gc] GC(6) Pause Young (Allocation Failure) 278M->162M(349M) 535.114ms\n"
        "[12.1s][info][gc] GC(7) Pause Young (Allocation Failure) 230M->70M(462M) 6.5ms\n"
        "[436.610s][info][gc] GC(287) Pause Full (Ergonomics) 249M->167M(235M) 206.843ms\n"
        "[437.0s][info][gc] GC(288) Pause Young (Allocation Failure) 214M->172M(241M) 7.4\n")
    gc = run.broker_gc(log)
    assert gc["young"] == {"count": 2, "total_ms": 541.6, "max_ms": 535.114,
                           "causes": {"Allocation Failure": 2}}
    assert gc["full"]["count"] == 2 and gc["full"]["max_ms"] == 206.843
    assert gc["full"]["causes"] == {"Metadata GC Threshold": 1, "Ergonomics": 1}
    assert "error" in run.broker_gc(tmp_path / "missing.log")
    table = run.comparison({"commit": "abc", "broker_gc": gc},
                           {"commit": "def", "broker_gc": {"young": dict(gc["young"], count=1)}})
    assert "| broker GC: young pauses | 2 | 1 | 0.50 |" in table
    assert "| broker GC: longest full pause ms | 206.8 |  |" in table  # none in the current run
    assert "longest 535.1 ms" in run.summary({"broker_gc": gc})
