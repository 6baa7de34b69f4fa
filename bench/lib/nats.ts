/** A unique NATS prefix per run, and removal of the streams and buckets it created. */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect } from "nats";
import { onCleanup } from "./cleanup.ts";
import { pidsByComm } from "./proc.ts";

/**
 * A fresh NATS_PREFIX; at cleanup, every JetStream stream the servers provisioned under it
 * (the event stream, the KV buckets' streams) is deleted.
 */
export function natsPrefixForRun(natsUrl: string, prefix = `bench_${randomBytes(4).toString("hex")}`): string {
  // Parley names streams <PREFIX>_… with the prefix upper-cased and "-" as "_" (src/log/subjects.ts).
  const streamPrefix = prefix.toUpperCase().replace(/-/g, "_");
  onCleanup(`delete NATS streams of ${prefix}`, async () => {
    const nc = await connect({ servers: natsUrl, timeout: 5_000, maxReconnectAttempts: 0 });
    try {
      const jsm = await nc.jetstreamManager();
      const names: string[] = [];
      for await (const info of jsm.streams.list()) {
        const name = info.config.name;
        if (name.startsWith(`${streamPrefix}_`) || name.startsWith(`KV_${streamPrefix}_`) || name.startsWith(`OBJ_${streamPrefix}_`)) names.push(name);
      }
      for (const name of names) await jsm.streams.delete(name);
    } finally {
      await nc.close();
    }
  });
  return prefix;
}

/**
 * The pid of the nats-server serving natsUrl's port (by its command line: -p/--port/--addr
 * host:port, 4222 when none is given), or null. Other nats-server processes on the machine
 * (a test cluster, say) are not it.
 */
export function natsServerPid(natsUrl: string): number | null {
  const port = new URL(natsUrl).port || "4222";
  for (const pid of pidsByComm("nats-server")) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    let found = "4222";
    for (let k = 0; k < args.length; k++) {
      const a = args[k]!;
      if (a === "-p" || a === "--port" || a === "-port") found = args[k + 1] ?? found;
      else if (/^--?port=/.test(a)) found = a.slice(a.indexOf("=") + 1);
    }
    if (found === port) return pid;
  }
  return null;
}
