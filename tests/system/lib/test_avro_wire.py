"""The Avro wire format: lib/'s codec and fastavro, an independent implementation, write the
same bytes and read each other's records; the registry's schemas stay BACKWARD-compatible."""
import copy
import io
import json
import struct
import subprocess
from pathlib import Path

import fastavro
import pytest

from kchat_testkit.stack import BUILD, ROOT

SCHEMAS = ROOT / "schemas"
KC_AVRO = str(BUILD / "tests" / "tools" / "kc-avro")
SAMPLES = json.loads(Path(__file__).with_name("avro_samples.json").read_text())
REGISTRY = json.loads((SCHEMAS / "registry.json").read_text())


def schema_json(file):
    return json.loads((SCHEMAS / file).read_text())


def newest(subject):
    return max(REGISTRY["subjects"][subject], key=lambda v: v["version"])


def samples():
    return [pytest.param(subject, v, id=f"{subject}-{i}")
            for subject, values in SAMPLES.items() if subject != "doc"
            for i, v in enumerate(values)]


def c_encode(subject, value):
    r = subprocess.run([KC_AVRO, f"--schemas-dir={SCHEMAS}", "encode", subject],
                       input=json.dumps(value).encode(), capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout


def c_decode(data):
    return subprocess.run([KC_AVRO, f"--schemas-dir={SCHEMAS}", "decode"], input=data,
                          capture_output=True, timeout=30)


def as_record(subject, value):
    """The sample as fastavro's Python record, through fastavro's own JSON decoder."""
    parsed = fastavro.parse_schema(schema_json(newest(subject)["file"]))
    return next(iter(fastavro.json_reader(io.StringIO(json.dumps(value)), parsed)))


def tag_branches(sample, rec):
    """Marks each union record with fastavro's "-type" key, as the sample names it, so that
    fastavro writes the branch the sample means (AddMembers and RemoveMembers have the same
    fields: without the name it would pick the first that fits)."""
    if isinstance(sample, dict) and len(sample) == 1 and isinstance(rec, (dict, bytes, str, int)):
        (name, inner), = sample.items()
        if "." in name and isinstance(rec, dict):
            tagged = tag_branches(inner, rec)
            tagged["-type"] = name
            return tagged
        if name in ("string", "long", "int", "bytes", "boolean", "double", "float"):
            return rec
    if isinstance(sample, dict) and isinstance(rec, dict):
        return {k: tag_branches(sample[k], v) for k, v in rec.items()}
    if isinstance(sample, list):
        return [tag_branches(s, r) for s, r in zip(sample, rec)]
    return rec


def short_union_names(v):
    """avro-c names union branches by short name; the spec's JSON uses full names."""
    if isinstance(v, dict):
        return {k.rsplit(".", 1)[-1]: short_union_names(x) for k, x in v.items()}
    if isinstance(v, list):
        return [short_union_names(x) for x in v]
    return v


@pytest.mark.parametrize("subject,value", samples())
def test_c_writes_what_fastavro_reads_and_writes(subject, value):
    data = c_encode(subject, value)
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == newest(subject)["id"]
    writer = fastavro.parse_schema(schema_json(newest(subject)["file"]))
    decoded = fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, None)
    expected = as_record(subject, value)
    assert decoded == expected
    out = io.BytesIO()
    fastavro.schemaless_writer(out, writer, tag_branches(value, expected))
    assert out.getvalue() == data[5:], "the two implementations must write identical bytes"


@pytest.mark.parametrize("subject,value", samples())
def test_c_reads_what_fastavro_writes(subject, value):
    entry = newest(subject)
    writer = fastavro.parse_schema(schema_json(entry["file"]))
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, entry["id"]))
    fastavro.schemaless_writer(out, writer, tag_branches(value, as_record(subject, value)))
    r = c_decode(out.getvalue())
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(r.stdout)
    assert got["schema_id"] == entry["id"]
    assert got["subject"] == subject
    assert got["value"] == short_union_names(value)


def framed(schema_id, payload):
    return struct.pack(">bI", 0, schema_id) + payload




@pytest.mark.parametrize("data,message", [
    (b"", "too short"),
    (b"\x00\x00\x00", "too short"),
    (b"\x01\x00\x00\x00\x02abc", "magic byte"),
    (framed(999, b"\x02a"), "unknown schema id 999"),
    (framed(2, b"\x02a"), "malformed Avro"),
    (framed(2, b"\xff" * 40), "malformed Avro"),
    (framed(2, b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"), "malformed Avro"),
    (framed(2, b"\x00" * (1024 * 1024)), "larger than"),
])
def test_c_refuses_bad_records_with_a_clear_error(data, message):
    r = c_decode(data)
    assert r.returncode == 1
    assert message in r.stderr.decode()


def test_json_input_refuses_what_it_cannot_read_exactly():
    value = json.loads(json.dumps(SAMPLES["chat.commands-value"][6]))
    value["body"]["io.kchat.SetReadMarker"]["seq_no"] = 9007199254740993
    r = subprocess.run([KC_AVRO, f"--schemas-dir={SCHEMAS}", "encode", "chat.commands-value"],
                       input=json.dumps(value).encode(), capture_output=True, timeout=30)
    assert r.returncode == 1
    assert "integer too large" in r.stderr.decode()


def test_c_refuses_trailing_bytes():
    good = c_encode("chat.events-value", SAMPLES["chat.events-value"][3])
    assert c_decode(good).returncode == 0
    r = c_decode(good + b"\x00")
    assert r.returncode == 1
    assert "left over" in r.stderr.decode()
    r = c_decode(good[:-3])
    assert r.returncode == 1
    assert "malformed" in r.stderr.decode()


def walk_records(node, found):
    if isinstance(node, list):
        for n in node:
            walk_records(n, found)
    elif isinstance(node, dict):
        if node.get("type") == "record":
            found.append(node)
            for f in node["fields"]:
                walk_records(f["type"], found)
        else:
            for key in ("type", "items", "values"):
                if key in node:
                    walk_records(node[key], found)


def test_registry_is_well_formed_and_documented():
    ids = [v["id"] for versions in REGISTRY["subjects"].values() for v in versions]
    assert len(ids) == len(set(ids)), "schema ids are never reused"
    for subject, versions in REGISTRY["subjects"].items():
        assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
        for v in versions:
            schema = schema_json(v["file"])
            assert schema["namespace"] == "io.kchat"
            records = []
            walk_records(schema, records)
            for rec in records:
                assert rec.get("doc"), f"{v['file']}: record {rec['name']} has no doc"
                for f in rec["fields"]:
                    assert f.get("doc"), f"{v['file']}: {rec['name']}.{f['name']} has no doc"


def can_read(writer_schema, reader_schema, records):
    """BACKWARD: a reader with the new schema reads every record written with the old one."""
    w = fastavro.parse_schema(copy.deepcopy(writer_schema))
    r = fastavro.parse_schema(copy.deepcopy(reader_schema))
    for rec in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, rec)
        buf.seek(0)
        fastavro.schemaless_reader(buf, w, r)


def old_records(subject, version):
    schema = fastavro.parse_schema(schema_json(version["file"]))
    values = [v for v in SAMPLES[subject]]
    out = []
    for v in values:
        try:
            out.append(next(iter(fastavro.json_reader(io.StringIO(json.dumps(v)), schema))))
        except Exception:  # a sample of a newer version; the old writer cannot express it
            continue
    return out


@pytest.mark.parametrize("subject", sorted(REGISTRY["subjects"]))
def test_every_version_reads_every_earlier_one(subject):
    versions = REGISTRY["subjects"][subject]
    for i, old in enumerate(versions):
        records = old_records(subject, old)
        assert records, f"no sample written with {old['file']}"
        for new in versions[i:]:
            can_read(schema_json(old["file"]), schema_json(new["file"]), records)


def test_the_compatibility_check_catches_a_breaking_change():
    subject = "chat.events-value"
    old = schema_json(newest(subject)["file"])
    broken = copy.deepcopy(old)
    broken["fields"].append({"name": "tenant", "type": "string", "doc": "no default: breaks"})
    with pytest.raises(Exception):
        can_read(old, broken, old_records(subject, newest(subject)))
    fine = copy.deepcopy(old)
    fine["fields"].append({"name": "tenant", "type": "string", "default": "", "doc": "defaulted"})
    can_read(old, fine, old_records(subject, newest(subject)))
