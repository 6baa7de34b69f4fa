/**
 * `node bench/lib/heapsnapshot.ts SNAPSHOT.heapsnapshot [BASELINE.heapsnapshot] [--top 40] [--per N]`
 *
 * Self size and count of a V8 heap snapshot by node type and constructor name; with a
 * baseline, the difference; with --per N, also divided by N (e.g. bytes per open stream).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

export function aggregate(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, "utf8"));
  const meta = snap.snapshot.meta;
  const fields: string[] = meta.node_fields;
  const types: string[] = meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf("type");
  const iName = fields.indexOf("name");
  const iSize = fields.indexOf("self_size");
  const nodes: number[] = snap.nodes;
  const strings: string[] = snap.strings;
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + iType]!]!;
    let name = type === "object" || type === "closure" || type === "native" ? strings[nodes[i + iName]!]! : `(${type})`;
    if (type === "closure") name = `closure ${name}`;
    if (name.length > 80) name = name.slice(0, 80) + "…";
    const key = `${name}`;
    const entry = out.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += nodes[i + iSize]!;
    out.set(key, entry);
  }
  return out;
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "40" }, per: { type: "string", default: "1" } } });
  const [file, base] = positionals as [string, string | undefined];
  const per = Number(values.per);
  const now = aggregate(file);
  const before = base ? aggregate(base) : new Map();
  const rows = [...new Set([...now.keys(), ...before.keys()])].map((k) => {
    const a = now.get(k) ?? { count: 0, bytes: 0 };
    const b = before.get(k) ?? { count: 0, bytes: 0 };
    return { k, count: a.count - b.count, bytes: a.bytes - b.bytes };
  });
  rows.sort((x, y) => y.bytes - x.bytes);
  const total = rows.reduce((s, r) => s + r.bytes, 0);
  console.log(`total ${(total / 1024).toFixed(0)} KiB${per > 1 ? `, ${(total / per).toFixed(0)} B per unit (/${per})` : ""}`);
  for (const r of rows.slice(0, Number(values.top))) {
    console.log(`${(r.bytes / 1024).toFixed(0).padStart(9)} KiB  ${String(r.count).padStart(8)}  ${per > 1 ? `${(r.bytes / per).toFixed(0).padStart(6)} B ${(r.count / per).toFixed(2).padStart(6)}/u  ` : ""}${r.k}`);
  }
}
