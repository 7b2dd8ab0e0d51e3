"""kchat-registry against standard clients: confluent-kafka's SchemaRegistryClient and
AvroDeserializer read chat.events through it (docs/analytics.md's example, run as written),
kchatctl register-schemas checks it, bad requests get the registry's errors and leave it
serving, a daemon refuses to start against a registry that lacks one of its schemas, and
the public ingress does not reach it."""
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from kchat_testkit.daemon import Daemon, start
from kchat_testkit.http import free_port, http_get, wait_until
from kchat_testkit.stack import BUILD, ENV, ROOT
from kchat_testkit.wire import body, command, events_of, send_message

SCHEMAS = ROOT / "schemas"
REGISTRY_JSON = json.loads((SCHEMAS / "registry.json").read_text())
URL = f"http://127.0.0.1:{ENV['KCHAT_REGISTRY_PORT']}"
DOC = (ROOT / "docs" / "analytics.md").read_text()


def versions(subject):
    return REGISTRY_JSON["subjects"][subject]


def file_schema(entry):
    return json.loads((SCHEMAS / entry["file"]).read_text())


def call(method, path, body=None, url=URL, raw=None):
    """(status, parsed JSON or None) of one request to a registry."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, None


@pytest.fixture(scope="module")
def client():
    return SchemaRegistryClient({"url": URL})


def test_the_client_finds_every_schema_under_its_id(client):
    assert sorted(client.get_subjects()) == sorted(REGISTRY_JSON["subjects"])
    for subject, entries in REGISTRY_JSON["subjects"].items():
        assert client.get_versions(subject) == [e["version"] for e in entries]
        latest = client.get_latest_version(subject)
        assert (latest.version, latest.schema_id) == (entries[-1]["version"], entries[-1]["id"])
        for e in entries:
            by_id = client.get_schema(e["id"])
            assert by_id.schema_type == "AVRO"
            assert json.loads(by_id.schema_str) == file_schema(e)
            # a lookup by the schema's text, laid out anew, finds the same id and version
            found = client.lookup_schema(subject, Schema(json.dumps(file_schema(e), indent=1),
                                                         "AVRO"))
            assert (found.schema_id, found.version) == (e["id"], e["version"])
            # registering what it holds answers the id (a producer with auto.register)
            assert client.register_schema(subject, Schema(json.dumps(file_schema(e)),
                                                          "AVRO")) == e["id"]
        assert client.get_compatibility(subject) == "BACKWARD"
    assert client.get_compatibility() == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as e:
        client.get_schema(999999)
    assert (e.value.http_status_code, e.value.error_code) == (404, 40403)


def test_the_registry_is_read_only(client):
    new = Schema(json.dumps({"type": "record", "name": "Sneaky", "namespace": "io.kchat",
                             "fields": [{"name": "x", "type": "string"}]}), "AVRO")
    for subject in ("chat.events-value", "someone-elses-value"):
        with pytest.raises(SchemaRegistryError) as e:
            client.register_schema(subject, new)
        assert (e.value.http_status_code, e.value.error_code) == (422, 42205)
    with pytest.raises(SchemaRegistryError) as e:
        client.set_compatibility("chat.events-value", "NONE")
    assert e.value.error_code == 42205
    with pytest.raises(SchemaRegistryError) as e:
        client.delete_subject("chat.events-value")
    assert e.value.error_code == 42205
    # nothing changed
    latest = client.get_latest_version("chat.events-value")
    assert latest.schema_id == versions("chat.events-value")[-1]["id"]
    assert client.get_compatibility("chat.events-value") == "BACKWARD"


def test_bad_requests_get_the_registrys_errors_and_it_keeps_serving():
    cases = [
        ("POST", "/subjects/chat.events-value", None, b"{not json", 400, None),
        ("POST", "/subjects/chat.events-value", {"schema": 7}, None, 422, 42201),
        ("POST", "/subjects/chat.events-value", {"schema": "{oops"}, None, 422, 42201),
        ("POST", "/subjects/chat.events-value", {"schema": "{}", "schemaType": "PROTOBUF"},
         None, 422, 42201),
        ("GET", "/subjects/chat.events-value/versions/0", None, None, 422, 42202),
        ("GET", "/subjects/chat.events-value/versions/99", None, None, 404, 40402),
        ("GET", "/subjects/%3Cscript%3E/versions", None, None, 404, 40401),
        ("GET", "/schemas/ids/4294967296", None, None, 404, 40403),
        ("GET", "/no/such/route", None, None, 404, None),
    ]
    for method, path, body, raw, status, code in cases:
        got, answer = call(method, path, body, raw=raw)
        assert got == status, (method, path, got, answer)
        assert isinstance(answer, dict) and isinstance(answer.get("message"), str), answer
        if code:
            assert answer["error_code"] == code, (path, answer)
    # a body over the limit is refused before it is read
    got, _ = call("POST", "/subjects/chat.events-value",
                  raw=b'{"schema":"' + b"x" * (300 * 1024) + b'"}')
    assert got == 413
    assert http_get(URL + "/health")[0] == 200
    status, subjects = call("GET", "/subjects")
    assert status == 200 and "chat.events-value" in subjects


def test_the_docs_example_reads_chat_events_through_the_registry(commands, brokers, tmp_path):
    convo = f"sr-{os.urandom(6).hex()}"
    commands.send(command(convo, "u1", "CreateConversation",
                          {"title": "registry", "members": ["u2"]}, origin="api:0"))
    for i in range(3):
        commands.send(send_message(convo, "u1", f"r{i}", f"through the registry {i}"))
    commands.flush()
    events_of(brokers, convo,
              lambda got: sum(body(v)[0] == "MessageCreated" for _, v in got) == 3)
    rest = DOC.split("## Reading it with the schema registry\n", 1)[1]
    script = tmp_path / "registry_example.py"
    script.write_text(re.search(r"```python\n(.*?)```", rest, re.S).group(1))
    # run from elsewhere than the checkout: it needs no schemas/
    r = subprocess.run([sys.executable, str(script), convo], cwd=tmp_path,
                       env={**os.environ, "KAFKA": brokers, "SCHEMA_REGISTRY": URL},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    *mine, last = r.stdout.strip().splitlines()
    rows = [re.fullmatch(r"partition (\d+) offset (\d+): (\w+) (.*)", line).groups()
            for line in mine]
    assert [kind for _, _, kind, _ in rows] == ["ConversationCreated"] + ["MessageCreated"] * 3
    msgs = [json.loads(b) for _, _, kind, b in rows if kind == "MessageCreated"]
    assert [m["seq_no"] for m in msgs] == [1, 2, 3]
    assert [m["content"] for m in msgs] == [f"through the registry {i}" for i in range(3)]
    summary = json.loads(last)
    newest = versions("chat.events-value")[-1]
    assert (summary["latest_version"], summary["latest_id"]) == (newest["version"], newest["id"])
    assert summary["events"] >= 4


def test_kchatctl_register_schemas_finds_them_all_with_their_ids():
    r = subprocess.run([str(BUILD / "ctl" / "kchatctl"), "register-schemas",
                        f"--schema-registry-url={URL}", f"--schemas-dir={SCHEMAS}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in r.stdout.splitlines()]
    want = [(s, str(e["version"]), str(e["id"])) for s, es in REGISTRY_JSON["subjects"].items()
            for e in es]
    assert [(w[0], w[2], w[4]) for w in lines] == want
    assert all(" ".join(w[5:]) == "already there" for w in lines)


def registry_of(schemas_dir):
    port = free_port()
    d = start(BUILD / "registry" / "kchat-registry",
              [f"--listen-port={port}", f"--schemas-dir={schemas_dir}"],
              f"http://127.0.0.1:{port}", "a second registry healthy")
    return d, f"http://127.0.0.1:{port}"


def test_a_daemon_refuses_to_start_when_the_registry_lacks_its_schema(tmp_path):
    """A registry that holds every schema but the newest Event version (a release whose
    schemas were not registered before its daemons rolled out): the projector says which and
    exits 1; kchatctl register-schemas says the registry cannot take it."""
    older = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, older)
    reg = json.loads((older / "registry.json").read_text())
    newest = reg["subjects"]["chat.events-value"].pop()
    (older / "registry.json").write_text(json.dumps(reg))
    registry, url = registry_of(older)
    try:
        proj = Daemon(BUILD / "projector" / "kchat-projector",
                      [f"--schema-registry-url={url}", "--schema-registry-wait-ms=1500",
                       f"--schemas-dir={SCHEMAS}", f"--admin-port={free_port()}",
                       "--group-id=registry-refusal-test"])
        assert proj.wait(timeout=60) == 1
        text = proj.text()
        assert (f"does not hold chat.events-value version {newest['version']} "
                f"(id {newest['id']}") in text, text[-2000:]
        assert "kchatctl register-schemas" in text
        proj.stop()
        # the read-only registry cannot take the missing version: the command says so
        r = subprocess.run([str(BUILD / "ctl" / "kchatctl"), "register-schemas",
                            f"--schema-registry-url={url}", f"--schemas-dir={SCHEMAS}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        assert f"registering chat.events-value version {newest['version']}" in r.stderr
        assert "read-only" in r.stderr
        # a registry that does not answer at all: the daemon waits, then says so
        dead = f"http://127.0.0.1:{free_port()}"
        r = subprocess.run([str(BUILD / "projector" / "kchat-projector"),
                            f"--schema-registry-url={dead}", "--schema-registry-wait-ms=1500",
                            f"--schemas-dir={SCHEMAS}",
                            f"--admin-port={free_port()}", "--group-id=registry-refusal-test"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        assert "schema registry" in r.stdout + r.stderr
        assert "Couldn't connect" in r.stdout + r.stderr or "refused" in r.stdout + r.stderr
        # the same registry once it holds the version (its files restored, restarted): a
        # daemon's check passes and it starts (an API beside the stack's: it takes no
        # partitions from anyone)
        registry.stop()
        (older / "registry.json").write_text((SCHEMAS / "registry.json").read_text())
        registry, url = registry_of(older)
        port = free_port()
        api = start(BUILD / "api" / "kchat-api",
                    [f"--schema-registry-url={url}", f"--schemas-dir={SCHEMAS}",
                     f"--listen-port={port}", "--instance-id=registry-test"],
                    f"http://127.0.0.1:{port}", "the API healthy", timeout=120)
        assert api.stop() == 0
    finally:
        assert registry.stop() == 0


def test_the_public_ingress_does_not_reach_the_registry():
    ingress = f"http://127.0.0.1:{ENV['KCHAT_INGRESS_PORT']}"
    for path in ("/subjects", "/schemas/ids/1", "/config"):
        status, _, text = http_get(ingress + path)
        assert "chat.events-value" not in str(text) and "compatibilityLevel" not in str(text), (
            path, status)
