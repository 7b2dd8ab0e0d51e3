"""Attachments end to end against the whole live stack and its real MinIO: presign, upload
straight to the object store, POST /attachments/{id}/complete (the API checks the stored object:
size, media type, an image's bytes and dimensions, and stores a WebP thumbnail beside it), a
message.send over the gateway that carries the attachment, the attachment in the delivered
frame, in history (Redis tail and Postgres alike) and in chat.events (decoded with fastavro), a
member's download through short-lived presigned URLs, a non-member's 404. And the refusals: a
forged id, another user's upload, another conversation's, one not completed, an oversized
object, bytes that are not of the declared type, an image that cannot be decoded. Deleting the
message removes its objects; an upload never sent is removed after its window."""
import asyncio
import io
import uuid

from PIL import Image

from kchat_testkit.api import (User, api_instance, call, conforms, minio, s3_args, s3_get,
                               s3_put)
from kchat_testkit.gateway import connect, recv_until, send, wait_routes
from kchat_testkit.http import wait_until
from kchat_testkit.stack import ENV
from kchat_testkit.wire import body, events_of


# ---- helpers ----

def image(fmt, w, h, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), (200, 30, 60) if mode == "RGB" else (200, 30, 60, 128)).save(
        buf, fmt)
    return buf.getvalue()


def conversation(owner, *members):
    r = owner.post("/conversations", {"title": "files", "members": [m.id for m in members]})
    assert r.status == 201, r
    return r.json["id"]


def presign(user, cid, name, ctype, size, base=None):
    r = user.post("/attachments/presign", {"convo_id": cid, "filename": name,
                                           "content_type": ctype, "size": size}, base=base)
    assert r.status == 200, r
    return r.json


def upload(user, cid, name, ctype, data, base=None, declared=None):
    """Presigns and uploads data: the presign answer."""
    p = presign(user, cid, name, ctype, declared or len(data), base)
    status, body = s3_put(p["url"], data, p["headers"])
    assert status == 200, body
    return p


def complete(user, att_id, base=None):
    return user.post(f"/attachments/{att_id}/complete", base=base)


def exists(key):
    try:
        minio().head_object(Bucket=bucket(), Key=key)
        return True
    except Exception as e:  # botocore's ClientError: 404
        if "404" in str(e) or "Not Found" in str(e):
            return False
        raise


_bucket = []


def bucket():
    if not _bucket:
        u = User()
        _bucket.append(presign(u, conversation(u), "x.txt", "text/plain", 1)["bucket"])
    return _bucket[0]


async def send_with(user, cid, atts, content=""):
    """message.send with attachments from user over the gateway: the ack."""
    ws = await connect(user.id)
    try:
        cmid = "m-" + uuid.uuid4().hex[:12]
        await send(ws, type="message.send", convo_id=cid, client_msg_id=cmid, content=content,
                   attachments=atts)
        ack, _ = await recv_until(ws, lambda f: f.get("type") == "ack" and
                                  f.get("client_msg_id") == cmid)
        return ack
    finally:
        await ws.close()


def history(user, cid, base=None):
    r = user.get(f"/conversations/{cid}/messages", base=base)
    assert r.status == 200, r
    return {m["seq_no"]: m for m in r.json["messages"]}


# ---- the way of an image ----

def test_an_image_from_upload_to_a_members_download():
    ann, bob, eve = User(), User(), User()
    cid = conversation(ann, bob)
    data = image("PNG", 1000, 500, "RGBA")
    p = upload(ann, cid, "sunset.png", "image/png", data)
    r = complete(ann, p["id"])
    assert r.status == 200, r
    conforms("/attachments/{id}/complete", "POST", r)
    att = r.json
    assert att == {"id": p["id"], "key": p["key"], "name": "sunset.png", "size": len(data),
                   "content_type": "image/png", "width": 1000, "height": 500,
                   "thumb_key": f"attachments/{cid}/{p['id']}/t.webp"}, att
    # the thumbnail: WebP, within 320 x 320, the same aspect, stored beside the original
    thumb = minio().get_object(Bucket=p["bucket"], Key=att["thumb_key"])
    assert thumb["ContentType"] == "image/webp"
    im = Image.open(io.BytesIO(thumb["Body"].read()))
    assert im.format == "WEBP" and im.size == (320, 160), im.size
    assert complete(ann, p["id"]).json == att  # completing again answers the same

    async def go():
        bws = await connect(bob.id)
        try:
            await wait_routes([(bob.id, 0)])
            ack = await send_with(ann, cid, [p["id"]], content="look")
            assert ack["status"] == "ok", ack
            frame, _ = await recv_until(bws, lambda f: f.get("type") == "message.create" and
                                        f.get("convo_id") == cid)
            return ack, frame
        finally:
            await bws.close()
    ack, frame = asyncio.run(go())
    assert frame["attachments"] == [att], frame
    assert frame["content"] == "look"
    seq = ack["seq_no"]
    wait_until(lambda: seq in history(bob, cid), "the message in history")
    assert history(bob, cid)[seq]["attachments"] == [att]

    # a member downloads through presigned URLs; the bytes are the original's (the download
    # asks Postgres, which the projector may fill a moment after Redis, where history came from)
    path = f"/conversations/{cid}/attachments/{p['id']}"
    wait_until(lambda: bob.get(path).status == 200, "the message in Postgres")
    r = bob.get(path)
    assert r.status == 200, r
    conforms("/conversations/{id}/attachments/{att_id}", "GET", r)
    assert r.json["attachment"] == att
    status, _, got = s3_get(r.json["url"])
    assert status == 200 and got == data
    status, headers, got = s3_get(r.json["thumb_url"])
    assert status == 200 and Image.open(io.BytesIO(got)).size == (320, 160)
    # anyone else: the 404 of an attachment that does not exist
    for who, att_id in [(eve, p["id"]), (bob, "a_" + uuid.uuid4().hex[:20])]:
        r = who.get(f"/conversations/{cid}/attachments/{att_id}")
        assert (r.status, r.code) == (404, "not_found"), r
    r = call("GET", f"/conversations/{cid}/attachments/{p['id']}")
    assert r.status == 401


def test_a_file_without_text_and_several_in_one_message():
    ann, bob = User(), User()
    cid = conversation(ann, bob)
    pdf = b"%PDF-1.4\n" + b"x" * 3000
    a1 = complete(ann, upload(ann, cid, "report.pdf", "application/pdf", pdf)["id"]).json
    a2 = complete(ann, upload(ann, cid, "notes.txt", "text/plain", b"hello\n")["id"]).json
    assert a1["width"] is None and a1["thumb_key"] is None and a1["size"] == len(pdf)
    ack = asyncio.run(send_with(ann, cid, [a2["id"], a1["id"]]))
    assert ack["status"] == "ok", ack
    wait_until(lambda: ack["seq_no"] in history(bob, cid), "the message in history")
    m = history(bob, cid)[ack["seq_no"]]
    assert m["content"] == "" and m["attachments"] == [a2, a1]  # in the sender's order


def test_the_event_carries_the_attachment_for_outside_readers():
    """chat.events holds Event v5 with the attachment: fastavro reads it with the registry's
    schema, found by the id in the Confluent frame."""
    ann = User()
    cid = conversation(ann)
    att = complete(ann, upload(ann, cid, "a.gif", "image/gif", image("GIF", 40, 30))["id"]).json
    assert (att["width"], att["height"]) == (40, 30)
    ack = asyncio.run(send_with(ann, cid, [att["id"]], content="gif"))
    assert ack["status"] == "ok", ack

    def created(events):
        return [f for name, f in map(body, events)
                if name == "MessageCreated" and f["seq_no"] == ack["seq_no"]]
    events = events_of(ENV["KCHAT_KAFKA_BROKERS"], cid,
                       lambda got: created([v for _, v in got]))
    assert created(events)[0]["attachments"] == [att], created(events)


# ---- refusals ----

def test_a_message_carries_only_the_senders_completed_uploads_of_that_conversation():
    ann, bob = User(), User()
    cid, other = conversation(ann, bob), conversation(ann, bob)
    done = complete(ann, upload(ann, cid, "a.txt", "text/plain", b"abc")["id"]).json
    waiting = upload(ann, cid, "b.txt", "text/plain", b"abc")["id"]  # not completed
    cases = [(ann, cid, ["a_" + uuid.uuid4().hex[:20]]),  # forged
             (bob, cid, [done["id"]]),  # another user's
             (ann, other, [done["id"]]),  # another conversation's
             (ann, cid, [waiting]),  # not completed
             (ann, cid, [done["id"], "a_" + uuid.uuid4().hex[:20]])]  # one of two forged
    for who, convo, atts in cases:
        ack = asyncio.run(send_with(who, convo, atts))
        assert ack["status"] == "error" and ack["error"]["code"] == "invalid_attachment", \
            (atts, ack)
    for atts, code in [(["x"], "invalid"), ([done["id"], done["id"]], "invalid"),
                       (["a_" + str(i) for i in range(11)], "invalid"), ("a_1", "invalid")]:
        ack = asyncio.run(send_with(ann, cid, atts))
        assert ack["status"] == "error" and ack["error"]["code"] == code, (atts, ack)
    # nobody else completes your upload; completing before uploading says so
    assert complete(bob, waiting).status == 404
    p = presign(ann, cid, "c.txt", "text/plain", 3)
    r = complete(ann, p["id"])
    assert (r.status, r.code) == (409, "not_uploaded"), r
    # the conversation's history has none of them
    assert all(not m["attachments"] for m in history(ann, cid).values())


def test_the_stored_object_is_checked_not_the_clients_word():
    ann = User()
    cid = conversation(ann)
    p, base = api_instance(*s3_args(), "--attachment-max-bytes=5000")
    try:
        # declared small, uploaded large: refused and deleted
        big = upload(ann, cid, "big.txt", "text/plain", b"x" * 9000, base=base, declared=100)
        r = complete(ann, big["id"], base=base)
        assert (r.status, r.code) == (413, "attachment_too_large"), r
        wait_until(lambda: not exists(big["key"]), "the oversized object removed")
        # declared a PNG, uploaded text: refused and deleted
        fake = upload(ann, cid, "cat.png", "image/png", b"not a picture at all", base=base)
        r = complete(ann, fake["id"], base=base)
        assert (r.status, r.code) == (415, "attachment_type_mismatch"), r
        wait_until(lambda: not exists(fake["key"]), "the mistyped object removed")
        # a JPEG's bytes under image/png
        jpg = upload(ann, cid, "j.png", "image/png", image("JPEG", 20, 20), base=base)
        assert complete(ann, jpg["id"], base=base).code == "attachment_type_mismatch"
        # a PNG whose header is right and whose pixels are not there
        png = image("PNG", 64, 64)
        broken = upload(ann, cid, "broken.png", "image/png", png[:60], base=base)
        r = complete(ann, broken["id"], base=base)
        assert (r.status, r.code) == (415, "invalid_image"), r
        # none of them can be sent
        for att in (big, fake, jpg, broken):
            ack = asyncio.run(send_with(ann, cid, [att["id"]]))
            assert ack["error"]["code"] == "invalid_attachment", ack
    finally:
        p.terminate()
        p.wait(30)


# ---- removal ----

def test_deleting_the_message_removes_its_objects_and_orphans_are_swept():
    ann, bob = User(), User()
    cid = conversation(ann, bob)
    p, base = api_instance(*s3_args(), "--attachment-sweep-s=1", "--attachment-orphan-grace-s=0",
                           "--attachment-send-window-s=20")
    try:
        sent = upload(ann, cid, "p.png", "image/png", image("PNG", 400, 300), base=base)
        att = complete(ann, sent["id"], base=base).json
        orphan = upload(ann, cid, "never.txt", "text/plain", b"never sent", base=base)
        assert complete(ann, orphan["id"], base=base).status == 200
        ack = asyncio.run(send_with(ann, cid, [att["id"]]))
        assert ack["status"] == "ok", ack
        wait_until(lambda: ack["seq_no"] in history(bob, cid), "the message in history")
        assert exists(att["key"]) and exists(att["thumb_key"])
        r = ann.delete(f"/conversations/{cid}/messages/{ack['seq_no']}")
        assert r.status == 200, r
        assert history(bob, cid)[ack["seq_no"]]["attachments"] == []
        r = bob.get(f"/conversations/{cid}/attachments/{att['id']}")
        assert r.status == 404, r
        wait_until(lambda: not exists(att["key"]) and not exists(att["thumb_key"]),
                   "the deleted message's objects removed", timeout=60)
        # the orphan stays while it may still be sent, and goes after
        assert exists(orphan["key"])
        wait_until(lambda: not exists(orphan["key"]), "the orphaned upload removed", timeout=90)
        ack = asyncio.run(send_with(ann, cid, [orphan["id"]]))
        assert ack["error"]["code"] == "invalid_attachment", ack
    finally:
        p.terminate()
        p.wait(30)
