/** A unique NATS prefix per run, and removal of the streams and buckets it created. */
import { randomBytes } from "node:crypto";
import { connect } from "nats";
import { onCleanup } from "./cleanup.ts";

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
