"""docs/openapi.yaml is true: live answers of every endpoint validate against it (jsonschema),
and schemathesis, run against the live API with the spec, finds no 5xx and no answer that
breaks the spec."""
import os
import subprocess
import uuid

import jsonschema
import yaml

from kchat_testkit.api import BASE, User, call
from kchat_testkit.http import wait_until
from kchat_testkit.stack import ROOT
from kchat_testkit.wire import Commands, send_message

SPEC_PATH = ROOT / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())


def resolve(node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        ptr = node["$ref"].lstrip("#/").split("/")
        node = SPEC
        for part in ptr:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def conforms(path, method, resp):
    """Validates a live response against the spec's schema for (path, method, status)."""
    op = SPEC["paths"][path][method.lower()]
    responses = op["responses"]
    assert str(resp.status) in responses, f"{method} {path}: status {resp.status} not in the spec"
    r = resolve(responses[str(resp.status)])
    content = r.get("content")
    if not content:
        return
    media = next(iter(content))
    ctype = resp.headers.get("Content-Type", "")
    assert ctype.startswith(media.split(";")[0]), (ctype, media)
    assert resp.headers.get("Cache-Control") == "no-store"
    target = r["content"][media]["schema"]
    jsonschema.Draft202012Validator({**SPEC, "x-probe": target, "$ref": "#/x-probe"}).validate(
        resp.json)


def test_spec_is_valid_openapi_31():
    assert SPEC["openapi"] == "3.1.0"
    jsonschema.Draft202012Validator.check_schema(SPEC["components"]["schemas"]["Conversation"])
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            if method == "parameters":
                continue
            assert op.get("operationId") and op.get("responses"), (path, method)


def test_live_answers_conform(brokers):
    name = f"spec_{uuid.uuid4().hex[:8]}"
    conforms("/auth/register", "POST",
             call("POST", "/auth/register", {"username": name, "password": "long enough"}))
    login = call("POST", "/auth/login", {"username": name, "password": "long enough"})
    conforms("/auth/login", "POST", login)
    conforms("/auth/refresh", "POST",
             call("POST", "/auth/refresh", {"refresh_token": login.json["refresh_token"]}))
    conforms("/auth/login", "POST", call("POST", "/auth/login", {"username": name, "password": "x"}))
    conforms("/auth/register", "POST", call("POST", "/auth/register", raw=b"{"))
    conforms("/auth/register", "POST", call("POST", "/auth/register", raw=b"x" * 70000))
    conforms("/auth/register", "POST",
             call("POST", "/auth/register", {"username": name, "password": "long enough"}))

    u, v = User(), User()
    c = u.post("/conversations", {"title": "spec", "members": [v.id]})
    conforms("/conversations", "POST", c)
    cid = c.json["id"]
    cmds = Commands(brokers)
    for i in range(3):
        cmds.send(send_message(cid, u.id, f"spec-{i}", f"spec text {i}"))
    cmds.flush()
    wait_until(lambda: u.get(f"/conversations/{cid}").json["last_seq"] == 3, "3 messages")
    conforms("/conversations", "GET", u.get("/conversations"))
    conforms("/conversations", "GET", call("GET", "/conversations"))
    conforms("/conversations/{id}", "GET", u.get(f"/conversations/{cid}"))
    conforms("/conversations/{id}", "GET", v.get("/conversations/c_nothing"))
    conforms("/conversations/{id}/members", "POST",
             u.post(f"/conversations/{cid}/members", {"members": [User().id]}))
    conforms("/conversations/{id}/read", "POST", v.post(f"/conversations/{cid}/read", {"seq_no": 2}))
    conforms("/conversations/{id}/read", "POST", v.post(f"/conversations/{cid}/read", {"seq_no": 9}))
    for q in ["limit=2", "since_seq=0&limit=2", "before_seq=2", "limit=x"]:
        conforms("/conversations/{id}/messages", "GET", u.get(f"/conversations/{cid}/messages?{q}"))
    conforms("/users", "GET", u.get(f"/users?username={v.name}"))
    conforms("/users", "GET", u.get("/users?username=nobody_" + uuid.uuid4().hex[:8]))
    conforms("/users", "GET", u.get("/users?username=a%20b"))
    conforms("/users", "GET", call("GET", f"/users?username={v.name}"))
    conforms("/users", "GET", u.get(f"/users?prefix={v.name[:6]}&limit=3"))
    conforms("/users", "GET", u.get("/users?prefix=&limit=3"))
    conforms("/users/me", "GET", u.get("/users/me"))
    conforms("/users/me", "PATCH", call("PATCH", "/users/me", {"display_name": "Spec Name"},
                                        token=u.token))
    conforms("/users/me", "PATCH", call("PATCH", "/users/me", {"display_name": "a\nb"},
                                        token=u.token))
    d = u.post("/conversations", {"kind": "direct", "members": [v.id]})
    conforms("/conversations", "POST", d)
    conforms("/conversations", "POST", u.post("/conversations", {"kind": "direct",
                                                                 "members": [v.id]}))
    conforms("/conversations/{id}/members", "POST",
             u.post(f"/conversations/{d.json['id']}/members", {"members": [User().id]}))
    m = "/conversations/{id}/messages/{seq}"
    conforms(m, "PATCH", call("PATCH", f"/conversations/{cid}/messages/1", {"content": "edited"},
                              token=u.token))
    conforms(m, "PATCH", call("PATCH", f"/conversations/{cid}/messages/2", {"content": "x"},
                              token=v.token))
    conforms(m, "DELETE", call("DELETE", f"/conversations/{cid}/messages/3", token=u.token))
    conforms(m, "DELETE", call("DELETE", f"/conversations/{cid}/messages/3", token=u.token))
    conforms(m, "DELETE", call("DELETE", f"/conversations/{cid}/messages/99", token=u.token))
    conforms("/users/{id}", "GET", u.get(f"/users/{v.id}"))
    conforms("/users/{id}", "GET", u.get("/users/u_nothing"))
    conforms("/search", "GET", u.get("/search?q=spec"))
    conforms("/search", "GET", u.get("/search?q="))
    conforms("/health", "GET", call("GET", "/health"))


def test_schemathesis_finds_no_server_error_and_no_spec_violation(tmp_path):
    u = User()
    env = dict(os.environ)
    cmd = [str(ROOT / ".venv" / "bin" / "st"), "run", str(SPEC_PATH), "--url", BASE,
           "-H", f"Authorization: Bearer {u.token}",
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance",
           "--max-examples", "25", "--seed", "7", "--generation-database", "none",
           "--workers", "1", "--request-timeout", "30", "--no-color",
           "--report", "junit", "--report-dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    tail = "\n".join(r.stdout.splitlines()[-60:])
    assert r.returncode == 0, tail
