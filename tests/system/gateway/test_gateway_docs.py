"""docs/asyncapi.yaml stays true to the gateway: every frame type is specified, and the frames
a live session produces validate against their payload schemas."""
import asyncio
import re

import jsonschema
import yaml

from kchat_testkit.stack import ROOT
from kchat_testkit.gateway import (connect, create_conversation, members_projected, quiet,
                                   recv_until, send, uid, wait_routes)

SPEC = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
# the frame types the gateway reads, from its parser's own table
CLIENT = set(re.findall(r'\[GW_IN_\w+\] = "([^"]+)"', (ROOT / "gateway" / "parse.c").read_text()))
SERVER = {"ack", "message.create", "message.update", "message.delete", "message.delivery",
          "message.read", "message.reaction", "conversation.update", "typing",
          "presence.update", "sync.complete", "system.notice", "error"}


def resolve(node):
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            path = node["$ref"].lstrip("#/").split("/")
            target = SPEC
            for p in path:
                target = target[p]
            return resolve(target)
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node


def schemas(operation):
    out = {}
    for ref in SPEC["operations"][operation]["messages"]:
        msg = resolve(ref)
        out[msg["name"]] = msg["payload"]
    return out


def test_every_frame_type_is_specified():
    assert set(schemas("clientSends")) == CLIENT
    assert set(schemas("gatewaySends")) == SERVER
    assert SPEC["servers"]["gateway"]["protocol"] == "ws"


def test_live_frames_match_their_schemas():
    server = schemas("gatewaySends")

    async def body():
        a, b = uid(), uid()
        wa, wb = await connect(a, 0), await connect(b, 1)
        await wait_routes([(a, 0), (b, 1)])
        convo = create_conversation(a, [b])
        seen = []

        async def drain(ws):
            seen.extend(await quiet(ws, 1.0))

        f, skipped = await recv_until(wb, lambda f: f["type"] == "conversation.update")
        seen.extend(skipped + [f])
        await send(wa, type="message.send", convo_id=convo, client_msg_id="s1", content="hi")
        f, skipped = await recv_until(wb, lambda f: f["type"] == "message.create")
        seen.extend(skipped + [f])
        members_projected(convo, [a, b])  # presence is for people who share a conversation
        await send(wb, type="presence.subscribe", user_ids=[a])
        await send(wb, type="message.read", convo_id=convo, seq_no=1)
        await send(wb, type="message.react", convo_id=convo, seq_no=1, emoji="\U0001F44D")
        await send(wa, type="message.send", convo_id=convo, client_msg_id="s1" * 100,
                   content="x")
        await send(wa, type="nonsense")
        members_projected(convo, [a, b])
        await send(wb, type="typing.start", convo_id=convo)
        await send(wb, type="sync", convo_id=convo, since_seq=0)
        await drain(wa)
        await drain(wb)
        for _ in range(20):  # the projector may lag: sync until the message is in it
            await send(wb, type="sync", convo_id=convo, since_seq=0)
            f, skipped = await recv_until(wb, lambda f: f["type"] == "sync.complete")
            seen.extend(skipped + [f])
            if f["up_to_seq"] >= 1:
                break
            await asyncio.sleep(0.3)
        types = {f["type"] for f in seen}
        assert {"ack", "message.create", "message.read", "presence.update", "error",
                "sync.complete", "message.delivery", "typing", "message.reaction"} <= types, types
        for f in seen:
            assert f["type"] in server, f
            jsonschema.validate(f, server[f["type"]])
        await wa.close()
        await wb.close()
    asyncio.run(body())
