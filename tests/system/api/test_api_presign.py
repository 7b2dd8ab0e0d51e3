"""POST /attachments/presign: the URL kchat-api signs is the one botocore's own presigner makes
for the same bucket, key, content type, credentials and time (an independent SigV4
implementation); an upload with it lands in the stack's MinIO, and one that breaks what was
signed is refused; bad requests, non-members and media types not accepted are refused."""
import datetime
import json
import urllib.parse
import uuid
from unittest import mock

import botocore.auth
import botocore.session
from botocore.config import Config

from kchat_testkit.api import User, api_instance, minio, s3_put as put
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


def conversation(user):
    r = user.post("/conversations", {"title": "files", "members": []})
    assert r.status == 201, r
    return r.json["id"]


def test_presigned_url_equals_botocores():
    u = User()
    cid = conversation(u)
    p, base = api_instance(f"--s3-endpoint={S3['endpoint']}", f"--s3-bucket={S3['bucket']}",
                           f"--s3-region={S3['region']}", f"--s3-access-key={S3['access']}",
                           f"--s3-secret-key={S3['secret']}", "--presign-ttl-s=600",
                           "--attachment-max-bytes=1000000")
    try:
        for filename, ctype in [("photo.png", "image/png"),
                                ("résumé final (2).pdf", "application/pdf"),
                                ("a+b=c&d;e~f.txt", "text/plain")]:
            status, body = post(base, u, {"convo_id": cid, "filename": filename,
                                          "content_type": ctype, "size": 12345})
            assert status == 200, body
            assert body["method"] == "PUT" and body["headers"] == {"Content-Type": ctype}
            assert body["bucket"] == S3["bucket"] and body["expires_in"] == 600
            assert body["id"].startswith("a_")
            assert body["key"] == f"attachments/{cid}/{body['id']}/f/{filename}"
            q = split(body["url"])[3]
            when = datetime.datetime.strptime(q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
            theirs = boto_url(body["key"], ctype, when, 600)
            assert split(body["url"]) == split(theirs), (body["url"], theirs)
            assert q["X-Amz-Signature"] == split(theirs)[3]["X-Amz-Signature"]
        ok = {"convo_id": cid, "filename": "ok", "content_type": "text/plain", "size": 1}
        bad = [({**ok, "filename": ""}, 400),
               ({**ok, "filename": "../etc/passwd"}, 400),
               ({**ok, "filename": "a\nb"}, 400),
               ({**ok, "filename": "x" * 256}, 400),
               ({**ok, "content_type": "text"}, 400),
               ({**ok, "content_type": "text/plain; charset=utf-8"}, 400),
               ({**ok, "size": 0}, 400),
               ({**ok, "size": 1.5}, 400),
               ({**ok, "size": "1"}, 400),
               ({**ok, "size": 1000001}, 413),
               ({**ok, "content_type": "application/x-msdownload"}, 415),
               ({**ok, "content_type": "text/html"}, 415),
               ({k: v for k, v in ok.items() if k != "convo_id"}, 400),
               ({**ok, "convo_id": "c_" + uuid.uuid4().hex}, 404),
               ({**ok, "convo_id": conversation(User())}, 404)]
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
        status, body = post(base, u, {"convo_id": conversation(u), "filename": "a.txt",
                                      "content_type": "text/plain", "size": 3})
        assert (status, body["error"]["code"]) == (404, "attachments_unavailable"), body
    finally:
        p.terminate()
        p.wait(30)


def test_upload_with_the_presigned_url_lands_in_minio():
    u = User()
    data = ("attachment " + uuid.uuid4().hex).encode() * 100
    r = u.post("/attachments/presign", {"convo_id": conversation(u), "filename": "notes été.txt",
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
