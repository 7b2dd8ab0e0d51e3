// The Socket.IO peer: what the original plan would have used for the real-time side.
// One node of a cluster sharing rooms through @socket.io/redis-adapter; several can run.
//
//   node socketio-server.js PORT REDIS_PORT PUBLIC_KEY_PEM
//
// A client connects with auth {token, convs}: the RS256 token is verified with the same key
// kchat uses (signature, exp), and the socket joins the named conversations (no membership
// store: a trust kchat does not give). "send" {convo_id, client_msg_id, content} gets a
// seq_no from Redis (INCR per conversation), goes to the room's other sockets as "message"
// and is acked {status, seq_no, client_msg_id}. Nothing is persisted beyond the counter.
// Packages come from the bench's cache (bench/peers/setup.sh), never from the repository.
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const [port, redisPort, keyPath] = process.argv.slice(2);
if (!port || !redisPort || !keyPath) {
  console.error("usage: node socketio-server.js PORT REDIS_PORT PUBLIC_KEY_PEM");
  process.exit(2);
}
const publicKey = crypto.createPublicKey(fs.readFileSync(keyPath));
const MAX_CONTENT = 16384;

function verify(token) {
  if (typeof token !== "string" || token.length > 4096) return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "RS256") return null;
  const ok = crypto.verify("RSA-SHA256", Buffer.from(parts[0] + "." + parts[1]), publicKey,
                           Buffer.from(parts[2], "base64url"));
  if (!ok) return null;
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof claims.sub !== "string" || !(claims.exp > Date.now() / 1000)) return null;
  return claims;
}

async function main() {
  const url = `redis://127.0.0.1:${redisPort}`;
  const pub = createClient({ url });
  const sub = pub.duplicate();
  const counters = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), counters.connect()]);
  const server = http.createServer();
  const io = new Server(server, { transports: ["websocket"], adapter: createAdapter(pub, sub),
                                  maxHttpBufferSize: 1e6 });
  io.use((socket, next) => {
    let claims = null;
    try { claims = verify(socket.handshake.auth.token); } catch (e) { claims = null; }
    if (!claims) return next(new Error("unauthorized"));
    socket.data.user = claims.sub;
    next();
  });
  io.on("connection", (socket) => {
    const convs = socket.handshake.auth.convs;
    if (Array.isArray(convs)) socket.join(convs.filter((c) => typeof c === "string").slice(0, 1000));
    socket.on("send", async (m, ack) => {
      if (typeof ack !== "function") return;
      if (!m || typeof m.convo_id !== "string" || typeof m.content !== "string" ||
          m.content.length > MAX_CONTENT || !socket.rooms.has(m.convo_id)) {
        ack({ status: "error", code: "bad_request", client_msg_id: m && m.client_msg_id });
        return;
      }
      try {
        const seq = await counters.incr(`sio:seq:${m.convo_id}`);
        socket.to(m.convo_id).emit("message", {
          type: "message.create", convo_id: m.convo_id, seq_no: seq,
          client_msg_id: m.client_msg_id, sender_id: socket.data.user, content: m.content,
          created_at: Date.now() });
        ack({ status: "ok", seq_no: seq, client_msg_id: m.client_msg_id });
      } catch (e) {
        ack({ status: "error", code: "unavailable", client_msg_id: m.client_msg_id });
      }
    });
  });
  server.listen(Number(port), "127.0.0.1", () => console.error(`socket.io listening on ${port}`));
  const stop = () => { io.close(); Promise.allSettled([pub.quit(), sub.quit(), counters.quit()])
    .then(() => process.exit(0)); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => { console.error(e); process.exit(1); });
