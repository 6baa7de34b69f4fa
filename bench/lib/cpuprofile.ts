/**
 * `node bench/lib/cpuprofile.ts PROFILE.cpuprofile [--top 40] [--filter TEXT]`
 *
 * Summarizes a V8 .cpuprofile (from node --cpu-prof): self time by function and by file or
 * package, and inclusive time of the heaviest functions, as shares of the sampled time.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export function summarizeProfile(file: string, top = 40) {
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const fnName = (n: Node) => `${n.callFrame.functionName || "(anonymous)"} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    self.set(fnName(n), (self.get(fnName(n)) ?? 0) + us);
    byFile.set(group(n.callFrame.url, n.callFrame.functionName), (byFile.get(group(n.callFrame.url, n.callFrame.functionName)) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const name = fnName(byId.get(cur)!);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const topOf = (m: Map<string, number>) =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => `${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
  return { seconds: total / 1e6, self: topOf(self), byFile: topOf(byFile), inclusive: topOf(inclusive) };
}

function shortUrl(url: string): string {
  if (!url) return "";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const src = url.indexOf("/src/");
  if (src >= 0) return url.slice(src + 1);
  const gen = url.indexOf("/gen/");
  if (gen >= 0) return url.slice(gen + 1);
  return url.startsWith("node:") ? url : path.basename(url);
}

function group(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith("node:")) return url;
  return shortUrl(url);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "40" } } });
  for (const file of positionals) {
    const s = summarizeProfile(file, Number(values.top));
    console.log(`\n### ${file}: ${s.seconds.toFixed(2)} s sampled`);
    console.log("\n-- self time by package / file\n" + s.byFile.join("\n"));
    console.log("\n-- self time by function\n" + s.self.join("\n"));
    console.log("\n-- inclusive time by function\n" + s.inclusive.join("\n"));
  }
}
