// Minimal socket.io peer for bench/: relays a phone's event to its session's room.
//   node server.js PORT [REDIS_URL]
// With REDIS_URL, rooms span instances through @socket.io/redis-adapter.
// Sockets: auth {sid, role}; the socket joins room `sid`.
// Phone path, either:  socket event "relay" (payload {sid, ...}, acked with {ok: true})
//                 or:  HTTP POST /relay/{sid} with the JSON body (answers {"ok": true})
// Every relayed payload is emitted as event "ev" to room `sid` (machine and phone).
// POST /null answers {"ok": true} and does nothing (the generator's floor).
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const redisUrl = process.argv[3];

const OK = Buffer.from('{"ok":true}');
const server = http.createServer((req, res) => {
  if (req.method !== "POST") { res.writeHead(404); res.end(); return; }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.url.startsWith("/relay/")) {
      let body;
      try { body = JSON.parse(Buffer.concat(chunks)); } catch (e) {
        res.writeHead(400); res.end(); return;
      }
      io.to(req.url.slice(7)).emit("ev", body);
    } else if (req.url !== "/null") {
      res.writeHead(404); res.end(); return;
    }
    res.writeHead(200, { "content-type": "application/json", "content-length": OK.length });
    res.end(OK);
  });
});

const io = new Server(server, { transports: ["websocket"], serveClient: false,
                                 perMessageDeflate: false, maxHttpBufferSize: 1e6 });

io.on("connection", (socket) => {
  const sid = socket.handshake.auth && socket.handshake.auth.sid;
  if (typeof sid === "string") socket.join(sid);
  socket.on("relay", (payload, ack) => {
    if (payload && typeof payload.sid === "string") io.to(payload.sid).emit("ev", payload);
    if (typeof ack === "function") ack({ ok: true });
  });
});

async function main() {
  if (redisUrl) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: redisUrl });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    io.adapter(createAdapter(pub, sub));
  }
  server.listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
}
process.on("SIGTERM", () => process.exit(0));
main().catch((e) => { console.error(e); process.exit(1); });
