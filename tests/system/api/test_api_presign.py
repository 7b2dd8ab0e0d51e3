"""POST /attachments/presign: the URL kchat-api signs is the one botocore's own presigner makes
for the same bucket, key, content type, credentials and time (an independent SigV4
implementation); an upload with it lands in the stack's MinIO, and one that breaks what was
signed is refused; bad requests are refused."""
import datetime
import json
import os
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from unittest import mock

import botocore.auth
import botocore.session
from botocore.config import Config

from kchat_testkit.api import User, api_instance
from kchat_testkit.http import http_get

S3 = {"endpoint": "http://127.0.0.1:9", "bucket": "kchat-attachments", "region": "eu-west-3",
      "access": "AKIDEXAMPLE+/key", "secret": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def boto_url(key, content_type, when, ttl):
    session = botocore.session.get_session()
    client = session.create_client(
        "s3", region_name=S3["region"], endpoint_url=S3["endpoint"],
        aws_access_key_id=S3["access"], aws_secret_access_key=S3["secret"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required"))
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
        return client.generate_presigned_url(
            "put_object", Params={"Bucket": S3["bucket"], "Key": key, "ContentType": content_type},
            ExpiresIn=ttl)


def split(url):
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.netloc, u.path, dict(urllib.parse.parse_qsl(u.query, strict_parsing=True))


def post(base, user, body):
    s, _, b = http_get(base + "/attachments/presign", method="POST", data=json.dumps(body).encode(),
                       headers={"Authorization": f"Bearer {user.token}"})
    return s, json.loads(b)


def test_presigned_url_equals_botocores():
    u = User()
    p, base = api_instance(f"--s3-endpoint={S3['endpoint']}", f"--s3-bucket={S3['bucket']}",
                           f"--s3-region={S3['region']}", f"--s3-access-key={S3['access']}",
                           f"--s3-secret-key={S3['secret']}", "--presign-ttl-s=600",
                           "--attachment-max-bytes=1000000")
    try:
        for filename, ctype in [("photo.png", "image/png"),
                                ("résumé final (2).pdf", "application/pdf"),
                                ("a+b=c&d;e~f.txt", "text/plain")]:
            status, body = post(base, u, {"filename": filename, "content_type": ctype,
                                          "size": 12345})
            assert status == 200, body
            assert body["method"] == "PUT" and body["headers"] == {"Content-Type": ctype}
            assert body["bucket"] == S3["bucket"] and body["expires_in"] == 600
            assert body["key"].startswith(f"attachments/{u.id}/a_")
            assert body["key"].endswith("/" + filename)
            q = split(body["url"])[3]
            when = datetime.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            theirs = boto_url(body["key"], ctype, when, 600)
            assert split(body["url"]) == split(theirs), (body["url"], theirs)
            assert q["X-Amz-Signature"] == split(theirs)[3]["X-Amz-Signature"]
        bad = [({"filename": "", "content_type": "text/plain", "size": 1}, 400),
               ({"filename": "../etc/passwd", "content_type": "text/plain", "size": 1}, 400),
               ({"filename": "a\nb", "content_type": "text/plain", "size": 1}, 400),
               ({"filename": "x" * 256, "content_type": "text/plain", "size": 1}, 400),
               ({"filename": "ok", "content_type": "text", "size": 1}, 400),
               ({"filename": "ok", "content_type": "text/plain; charset=utf-8", "size": 1}, 400),
               ({"filename": "ok", "content_type": "text/plain", "size": 0}, 400),
               ({"filename": "ok", "content_type": "text/plain", "size": 1.5}, 400),
               ({"filename": "ok", "content_type": "text/plain", "size": "1"}, 400),
               ({"filename": "ok", "content_type": "text/plain", "size": 1000001}, 413)]
        for req, want in bad:
            status, body = post(base, u, req)
            assert status == want and body["error"]["code"], (req, status, body)
        s, _, _ = http_get(base + "/attachments/presign", method="POST", data=b"{}")
        assert s == 401
    finally:
        p.terminate()
        p.wait(30)


def test_presign_without_an_object_store_is_404():
    u = User()
    p, base = api_instance("--s3-endpoint=")
    try:
        status, body = post(base, u, {"filename": "a.txt", "content_type": "text/plain",
                                      "size": 3})
        assert (status, body["error"]["code"]) == (404, "attachments_unavailable"), body
    finally:
        p.terminate()
        p.wait(30)


def minio():
    creds = {}
    path = Path(os.environ["KCHAT_STATE_DIR"]) / "minio" / "credentials"
    for line in path.read_text().splitlines():
        k, _, v = line.partition("=")
        creds[k] = v
    session = botocore.session.get_session()
    return session.create_client(
        "s3", region_name=os.environ["KCHAT_S3_REGION"],
        endpoint_url=f"http://127.0.0.1:{os.environ['KCHAT_MINIO_PORT']}",
        aws_access_key_id=creds["KCHAT_S3_ACCESS_KEY"],
        aws_secret_access_key=creds["KCHAT_S3_SECRET_KEY"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def put(url, data, headers):
    req = urllib.request.Request(url, data=data, method="PUT", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_upload_with_the_presigned_url_lands_in_minio():
    u = User()
    data = ("attachment " + uuid.uuid4().hex).encode() * 100
    r = u.post("/attachments/presign", {"filename": "notes été.txt",
                                        "content_type": "text/plain", "size": len(data)})
    assert r.status == 200, r
    status, body = put(r.json["url"], data, r.json["headers"])
    assert status == 200, body
    obj = minio().get_object(Bucket=r.json["bucket"], Key=r.json["key"])
    assert obj["Body"].read() == data
    assert obj["ContentType"] == "text/plain"
    # what was signed is binding: another content type, or another key, is refused
    status, _ = put(r.json["url"], data, {"Content-Type": "text/html"})
    assert status == 403
    prefix = urllib.parse.quote(r.json["key"].rsplit("/", 1)[0])
    other = r.json["url"].replace(prefix, prefix + "x")
    assert other != r.json["url"]
    status, _ = put(other, data, r.json["headers"])
    assert status == 403
