/**
 * Looks for a marker string everywhere a server run leaves data: every table of its database
 * (dumped row by row as text), every JetStream stream under its prefix, every file under its
 * media directory, every log line and every request the SDK put on the wire. The marker is
 * looked for as written, lower- and upper-cased, hex (how bytea columns print) and base64 /
 * base64url at each of the three byte alignments, so an encoding does not hide it.
 */
import { readdir, readFile } from "node:fs/promises";
import * as path from "node:path";
import { Writable } from "node:stream";
import { toBinary } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { connect } from "nats";
import pino from "pino";
import { withDatabase } from "../helpers/event-log-db.ts";

/** One place data was found, as text to grep. */
export interface Haystack {
  readonly place: string;
  readonly text: string;
}

/** Where a form of the marker was found. */
export interface Finding {
  readonly place: string;
  readonly form: string;
  readonly excerpt: string;
}

/** A marker: letters (both cases) and digits, so it is one searchable word. */
export function newMarker(prefix: string): string {
  const hex = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex");
  return `${prefix}Zq${hex}Mk`;
}

/** Every form of the marker the scan looks for, by name. */
export function markerForms(marker: string): Map<string, string> {
  const forms = new Map<string, string>();
  for (const [name, text] of [["as written", marker], ["lower-case", marker.toLowerCase()], ["upper-case", marker.toUpperCase()]] as const) {
    forms.set(name, text);
    const bytes = Buffer.from(text, "utf8");
    forms.set(`${name}, hex`, bytes.toString("hex"));
    forms.set(`${name}, HEX`, bytes.toString("hex").toUpperCase());
    for (let shift = 0; shift < 3; shift++) {
      const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
      // Drop the 4-character groups that also cover the padding or the bytes after the marker.
      for (const [encoding, encoded] of [["base64", padded.toString("base64")], ["base64url", padded.toString("base64url")]] as const) {
        const core = encoded.slice(shift === 0 ? 0 : 4, Math.floor(padded.length / 3) * 4);
        forms.set(`${name}, ${encoding} at offset ${shift}`, core);
      }
    }
  }
  return forms;
}

/** Every form of the marker in the haystacks. */
export function findMarker(marker: string, haystacks: readonly Haystack[]): Finding[] {
  const forms = markerForms(marker);
  const found: Finding[] = [];
  for (const { place, text } of haystacks) {
    for (const [form, needle] of forms) {
      const at = text.indexOf(needle);
      if (at >= 0) found.push({ place, form, excerpt: text.slice(Math.max(0, at - 60), at + needle.length + 60) });
    }
  }
  return found;
}

export function describeFindings(findings: readonly Finding[]): string {
  return findings.map((f) => `${f.place} (${f.form}): …${f.excerpt}…`).join("\n");
}

/** The query that lists the user tables of a database, by schema and name. */
const TABLES_SQL =
  "select schemaname as schema, tablename as name from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1, 2";

/** Runs SQL and returns rows; the same shape for pg and PGlite. */
type Query = (sql: string) => Promise<Record<string, unknown>[]>;

async function dumpTables(query: Query): Promise<Haystack[]> {
  const out: Haystack[] = [];
  for (const row of await query(TABLES_SQL)) {
    const table = `"${String(row.schema)}"."${String(row.name)}"`;
    const rows = await query(`select t::text as row from ${table} t`);
    out.push({ place: `table ${table}`, text: rows.map((r) => String(r.row)).join("\n") });
  }
  return out;
}

/** Every table of the PostgreSQL database at url, one haystack per table. */
export function dumpPostgres(url: string): Promise<Haystack[]> {
  return withDatabase(url, (c) => dumpTables(async (sql) => (await c.query(sql)).rows));
}

/** Every table of a PGlite data directory (the server using it must have stopped). */
export async function dumpPglite(dataDir: string): Promise<Haystack[]> {
  const { PGlite } = await import("@electric-sql/pglite");
  const db = new PGlite({ dataDir });
  try {
    return await dumpTables(async (sql) => (await db.query<Record<string, unknown>>(sql)).rows);
  } finally {
    await db.close();
  }
}

/** Every message of every JetStream stream whose name or subjects carry the prefix. */
export async function dumpJetStream(servers: string, prefix: string): Promise<Haystack[]> {
  const nc = await connect({ servers: servers.split(","), timeout: 2_000 });
  try {
    const jsm = await nc.jetstreamManager();
    const needle = prefix.toLowerCase();
    const out: Haystack[] = [];
    for await (const si of jsm.streams.list()) {
      const subjects = si.config.subjects ?? [];
      if (!si.config.name.toLowerCase().includes(needle) && !subjects.some((s) => s.toLowerCase().includes(needle))) continue;
      const { state } = await jsm.streams.info(si.config.name);
      const parts: string[] = [];
      for (let seq = state.first_seq; state.messages > 0 && seq <= state.last_seq; seq++) {
        const m = await jsm.streams.getMessage(si.config.name, { seq }).catch(() => null);
        if (!m) continue;
        const headers = m.header ? [...m.header.keys()].map((k) => `${k}: ${m.header.values(k).join(",")}`).join("; ") : "";
        parts.push(`${m.subject} ${headers} ${Buffer.from(m.data).toString("latin1")}`);
      }
      out.push({ place: `stream ${si.config.name} (${parts.length} messages)`, text: parts.join("\n") });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** Every file under dir (recursively), as bytes read as latin1. */
export async function dumpFiles(dir: string, label: string): Promise<Haystack[]> {
  const out: Haystack[] = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    const file = path.join(e.parentPath, e.name);
    out.push({ place: `${label} ${path.relative(dir, file)}`, text: (await readFile(file)).toString("latin1") });
  }
  return out;
}

/** A pino logger at trace level whose lines are kept in memory. */
export function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level: "trace", base: { service: "parley" } }, sink), lines };
}

/** An interceptor that keeps every unary request message the client sends, encoded. */
export function wireRecorder(): { interceptor: Interceptor; requests: Haystack[] } {
  const requests: Haystack[] = [];
  const interceptor: Interceptor = (next) => async (req) => {
    if (!req.stream) {
      const bytes = toBinary(req.method.input, req.message);
      requests.push({ place: `request ${req.method.parent.typeName}.${req.method.name}`, text: Buffer.from(bytes).toString("latin1") });
    }
    return next(req);
  };
  return { interceptor, requests };
}
