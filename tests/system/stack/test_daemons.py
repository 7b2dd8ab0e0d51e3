"""scripts/daemons.json is the one list of the daemons and their ports: scripts/env.sh's port
variables, scripts/stack.sh's daemons, the tests' and the bench's view of them, the CMake
targets and helm/kchat's values and templates must agree with it. Needs no running stack:

  .venv/bin/python -m pytest tests/system/stack/test_daemons.py
"""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from kchat_testkit.stack import ROOT, SPEC, daemon_table, instance_names

pytestmark = pytest.mark.nostack

BASE = 40000  # any base but make run's (17000 moves the ingress to 8080)
MAX = max(d.get("instances", 1) for d in SPEC)  # the most instances of a daemon
CHART = ROOT / "helm" / "kchat"


def port_vars():
    return [p["variable"] for d in SPEC for p in d["ports"]]


def clean_env(**extra):
    """The environment of a shell with no KCHAT_* variable but extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCHAT_")}
    env.update({"KCHAT_PORT_BASE": str(BASE), "KCHAT_STATE_DIR": "/nonexistent/kchat-state",
                "KCHAT_BUILD_DIR": "/nonexistent/kchat-build", **extra})
    return env


@pytest.fixture(scope="module")
def env_sh():
    """Every KCHAT_* variable scripts/env.sh sets from KCHAT_PORT_BASE alone."""
    out = subprocess.run(["bash", "-c", f'. "{ROOT}/scripts/env.sh"; env'], env=clean_env(),
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines()
                if line.startswith("KCHAT_") and "=" in line)


def test_the_spec_is_well_formed():
    names = [d["name"] for d in SPEC]
    assert len(set(names)) == len(names), f"daemons.json names a daemon twice: {names}"
    assert len(set(port_vars())) == len(port_vars()), "daemons.json names a variable twice"
    for d in SPEC:
        roles = [p["role"] for p in d["ports"]]
        assert d["health"] in roles, f"{d['name']}: health port {d['health']} not in {roles}"


def test_env_sh_derives_each_port_from_the_base(env_sh):
    for d in SPEC:
        for p in d["ports"]:
            got = env_sh.get(p["variable"])
            assert got == str(BASE + p["offset"]), (
                f"scripts/env.sh sets {p['variable']}={got} for KCHAT_PORT_BASE={BASE}; "
                f"scripts/daemons.json says base + {p['offset']} = {BASE + p['offset']}")


def test_no_two_listeners_share_a_port(env_sh):
    """Every instance's ports (port + N for instance N) and the other services' ports of
    scripts/env.sh are distinct."""
    owner = {}
    for name, value in env_sh.items():
        if name.endswith("_PORT") and name not in port_vars() and value.isdigit():
            owner[int(value)] = name
    for d in SPEC:
        for p in d["ports"]:
            for i in range(d.get("instances", 1)):
                port = BASE + p["offset"] + i
                assert port not in owner, (f"{d['name']} instance {i} {p['role']} port base + "
                                           f"{p['offset'] + i} is also {owner.get(port)}'s")
                owner[port] = f"{d['name']}{i or ''} {p['role']}"


def stack_sh(gateways):
    return subprocess.run([str(ROOT / "scripts" / "stack.sh"), "daemons"],
                          env=clean_env(KCHAT_GATEWAYS=str(gateways)),
                          capture_output=True, text=True)


def test_stack_sh_runs_each_instance_with_its_binary_and_ports():
    r = stack_sh(MAX)
    assert r.returncode == 0, r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == instance_names(MAX), (
        "scripts/stack.sh's daemons (in start order) differ from scripts/daemons.json's")
    by_name = {d["name"]: d for d in SPEC}
    for name, binary, health, flags in rows:
        base_name = name.rstrip("0123456789")
        d, i = by_name[base_name], int(name[len(base_name):] or 0)
        assert binary == f"/nonexistent/kchat-build/{d['binary']}", (
            f"scripts/stack.sh runs {name} as {binary}; scripts/daemons.json says {d['binary']}")
        ports = {p["role"]: BASE + p["offset"] + i for p in d["ports"]}
        want = f"http://127.0.0.1:{ports[d['health']]}/health"
        assert health == want, (f"scripts/stack.sh asks {name} for {health}; "
                                f"scripts/daemons.json says {want}")
        for p in d["ports"]:
            want = f"{p['flag']}={BASE + p['offset'] + i}"
            assert want in flags.split(), f"scripts/stack.sh starts {name} without {want}: {flags}"


def test_stack_sh_refuses_more_instances_than_the_ports_allow():
    r = stack_sh(MAX + 1)
    assert r.returncode == 2, f"KCHAT_GATEWAYS={MAX + 1} accepted: {r.stdout}{r.stderr}"


def test_stack_sh_stops_every_instance():
    text = (ROOT / "scripts" / "stack.sh").read_text()
    m = re.search(r"for d in ([a-z0-9 ]+); do stop_daemon", text)
    assert m, "scripts/stack.sh: no `for d in ...; do stop_daemon` line in down()"
    assert sorted(m.group(1).split()) == sorted(instance_names(MAX)), (
        "scripts/stack.sh's down() does not stop every instance scripts/daemons.json allows")


def test_the_tests_see_the_same_binaries_and_ports(env_sh):
    table = daemon_table(env_sh, ROOT / "b")
    assert list(table) == [d["name"] for d in SPEC]
    for d in SPEC:
        port = next(p for p in d["ports"] if p["role"] == d["health"])
        want = {"binary": ROOT / "b" / d["binary"],
                "health": f"http://127.0.0.1:{BASE + port['offset']}"}
        assert table[d["name"]] == want, (f"kchat_testkit.stack sees {d['name']} as "
                                          f"{table[d['name']]}; expected {want}")


def test_the_bench_sees_the_same_instances_and_ports(env_sh):
    run_py = str(ROOT / "bench" / "run.py")
    probe = ("import importlib.util, json\n"
             f"spec = importlib.util.spec_from_file_location('r', {run_py!r})\n"
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
             "print(json.dumps({'daemons': m.DAEMONS, 'gateways': m.gateways_arg()}))\n")
    env = {**clean_env(), **env_sh, "KCHAT_GATEWAYS": "3"}
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert sorted(got["daemons"]) == sorted(instance_names(3)), got["daemons"]
    ws = next(p for d in SPEC if d["name"] == "gateway" for p in d["ports"] if p["role"] == "ws")
    assert got["gateways"] == ",".join(f"127.0.0.1:{BASE + ws['offset'] + i}" for i in range(3))


def test_cmake_builds_each_binary():
    for d in SPEC:
        folder, exe = d["binary"].split("/")
        text = (ROOT / folder / "CMakeLists.txt").read_text()
        assert f"add_executable({exe} " in text, f"{folder}/CMakeLists.txt does not build {exe}"


def test_the_chart_has_each_daemon_with_its_ports():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    templates = {}
    for t in (CHART / "templates").glob("*.yaml"):
        text = t.read_text()
        if re.search(r"^kind: (Deployment|StatefulSet)$", text, re.M):
            templates[t.stem] = text
    assert sorted(templates) == sorted(d["chart"] for d in SPEC), (
        f"helm/kchat/templates runs {sorted(templates)}; scripts/daemons.json has "
        f"{sorted(d['chart'] for d in SPEC)}")
    for d in SPEC:
        c, text = d["chart"], templates[d["chart"]]
        assert text.startswith("{{- $c := .Values." + c + " }}"), f"{c}.yaml: not .Values.{c}"
        assert f"kchat-{d['name']}" in text, f"{c}.yaml does not run kchat-{d['name']}"
        for p in d["ports"]:
            got = values.get(c, {}).get(p["chart_key"])
            assert got == p["chart_port"], (f"helm/kchat/values.yaml {c}.{p['chart_key']} is "
                                            f"{got}; scripts/daemons.json says {p['chart_port']}")
            assert "containerPort: {{ $c." + p["chart_key"] + " }}" in text, (
                f"{c}.yaml has no containerPort {p['chart_key']}")
