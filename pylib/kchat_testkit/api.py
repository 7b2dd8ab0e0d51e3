"""A small client of kchat-api for the system tests (urllib only, never raises on HTTP errors)."""
import json
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import yaml

from .daemon import start
from .http import free_port, http_get, wait_until
from .stack import DAEMONS, ENV, ROOT
from .wire import send_message

BASE = f"http://127.0.0.1:{ENV.get('KCHAT_API_PORT')}"
OPENAPI = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def spec_node(ref):
    """The node of docs/openapi.yaml that a local $ref ("#/components/...") names."""
    node = OPENAPI
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def conforms(path, method, resp):
    """The live answer is one docs/openapi.yaml describes for (path, method, status)."""
    responses = OPENAPI["paths"][path][method.lower()]["responses"]
    assert str(resp.status) in responses, f"{method} {path}: status {resp.status} not in the spec"
    r = responses[str(resp.status)]
    if "$ref" in r:
        r = spec_node(r["$ref"])
    content = r.get("content")
    if not content:
        assert not resp.raw, resp
        return
    schema = next(iter(content.values()))["schema"]
    jsonschema.Draft202012Validator({**OPENAPI, "x-probe": schema, "$ref": "#/x-probe"}).validate(
        resp.json)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def code(self):
        """The error code of an {error:{code,message}} body."""
        return (self.json or {}).get("error", {}).get("code")

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


def call(method, path, body=None, token=None, raw=None, headers=None, timeout=30, base=None):
    h = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = f"Bearer {token}"
    return Resp(*http_get((base or BASE) + path, timeout=timeout, method=method, data=data,
                          headers=h))


def serving_without_redis(base):
    """Whether an API started without Redis serves (its /health stays 503, its redis check
    failing): /metrics answers and it has read the deactivated accounts, without which it
    answers authenticated requests 503."""
    if http_get(base + "/metrics")[0] != 200:
        return False
    return json.loads(http_get(base + "/health")[2])["checks"]["revocations"]["ok"]


def unique_name(prefix="user"):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class User:
    """A registered and logged-in user."""

    def __init__(self, name=None, password="correct horse battery"):
        self.name = name or unique_name()
        self.password = password
        r = call("POST", "/auth/register", {"username": self.name, "password": password})
        assert r.status == 201, r
        self.id = r.json["user_id"]
        self.login()

    def login(self):
        r = call("POST", "/auth/login", {"username": self.name, "password": self.password})
        assert r.status == 200, r
        self.token = r.json["access_token"]
        self.refresh_token = r.json["refresh_token"]
        return r

    def get(self, path, **kw):
        return call("GET", path, token=self.token, **kw)

    def post(self, path, body=None, **kw):
        return call("POST", path, body, token=self.token, **kw)

    def patch(self, path, body=None, **kw):
        return call("PATCH", path, body, token=self.token, **kw)

    def put(self, path, body=None, **kw):
        return call("PUT", path, body, token=self.token, **kw)

    def delete(self, path, **kw):
        return call("DELETE", path, token=self.token, **kw)

    def react(self, convo, seq, emoji, **kw):
        """PUT /conversations/{convo}/messages/{seq}/reaction {"emoji": emoji}."""
        return self.put(f"/conversations/{convo}/messages/{seq}/reaction", {"emoji": emoji}, **kw)

    def unreact(self, convo, seq, **kw):
        """DELETE /conversations/{convo}/messages/{seq}/reaction."""
        return self.delete(f"/conversations/{convo}/messages/{seq}/reaction", **kw)


def private_key_pem():
    with open(os.environ["KCHAT_JWT_PRIVATE_KEY"], "rb") as f:
        return f.read()


def public_key_pem():
    with open(os.environ["KCHAT_JWT_PUBLIC_KEY"], "rb") as f:
        return f.read()


def api_instance(*extra):
    """A second kchat-api on a port of its own: (its Daemon, its base URL)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    p = start(DAEMONS["api"]["binary"], [f"--listen-port={port}",
                                         f"--schemas-dir={ROOT / 'schemas'}",
                                         "--shutdown-timeout-ms=20000", *extra],
              base, "the second API healthy")
    return p, base


def send_all(commands, convo, sender, texts):
    """Sends texts from sender straight to chat.commands (as a gateway would), in order."""
    for i, t in enumerate(texts):
        commands.send(send_message(convo, sender.id, f"m-{uuid.uuid4().hex[:8]}-{i}", t))
    commands.flush()


def wait_last_seq(user, convo, n):
    """Waits until the read model has seq_no n in convo; returns the conversation."""
    def done():
        r = user.get(f"/conversations/{convo}")
        return r.status == 200 and r.json["last_seq"] >= n and r.json
    return wait_until(done, f"last_seq {n} in the read model")


def minio_credentials():
    creds = {}
    path = Path(os.environ["KCHAT_STATE_DIR"]) / "minio" / "credentials"
    for line in path.read_text().splitlines():
        k, _, v = line.partition("=")
        creds[k] = v
    return creds


def s3_where():
    """The options that name the stack's MinIO and bucket, without the keys."""
    return [f"--s3-endpoint=http://127.0.0.1:{os.environ['KCHAT_MINIO_PORT']}",
            f"--s3-bucket={os.environ['KCHAT_S3_BUCKET']}",
            f"--s3-region={os.environ['KCHAT_S3_REGION']}"]


def s3_env():
    """The environment with MinIO's keys in KCHAT_S3_ACCESS_KEY and KCHAT_S3_SECRET_KEY, as an
    operator gives them to a daemon or to Postgres' archive command."""
    return {**os.environ, **minio_credentials()}


def s3_args():
    """The options that point a second kchat-api at the stack's MinIO."""
    creds = minio_credentials()
    return [*s3_where(), f"--s3-access-key={creds['KCHAT_S3_ACCESS_KEY']}",
            f"--s3-secret-key={creds['KCHAT_S3_SECRET_KEY']}"]


def minio():
    """A botocore S3 client of the stack's MinIO, with its root credentials."""
    import botocore.session
    from botocore.config import Config
    creds = minio_credentials()
    session = botocore.session.get_session()
    return session.create_client(
        "s3", region_name=os.environ["KCHAT_S3_REGION"],
        endpoint_url=f"http://127.0.0.1:{os.environ['KCHAT_MINIO_PORT']}",
        aws_access_key_id=creds["KCHAT_S3_ACCESS_KEY"],
        aws_secret_access_key=creds["KCHAT_S3_SECRET_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def s3_put(url, data, headers):
    """PUT to a presigned URL: (status, body)."""
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def s3_get(url):
    """GET of a presigned URL: (status, headers, body)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
