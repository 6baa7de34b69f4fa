/**
 * Samples what the bench database's backends are doing (pg_stat_activity wait events) every
 * few milliseconds over one persistent connection; result() gives the share of samples per
 * state, and the average number of backends in it.
 */
import pg from "pg";
import { sleep } from "./util.ts";

export interface PgSampler {
  start(): void;
  stop(): void;
  result(): Promise<Record<string, string>>;
}

export function startPgSampler(url: string, datname: string, everyMs = 10): PgSampler {
  const client = new pg.Client({ connectionString: url });
  const counts = new Map<string, number>();
  let samples = 0;
  let running = false;
  let loop: Promise<void> = Promise.resolve();
  const connected = client.connect();
  connected.catch(() => {});
  return {
    start() {
      running = true;
      loop = (async () => {
        await connected;
        while (running) {
          const r = await client.query(
            `select coalesce(wait_event_type || ':' || wait_event, 'CPU') as w, state, left(query, 40) as q from pg_stat_activity
              where datname = $1 and backend_type = 'client backend' and pid <> pg_backend_pid()`,
            [datname],
          );
          for (const row of r.rows as { w: string; state: string; q: string }[]) {
            const key =
              row.state === "idle" ? "idle" : row.state === "idle in transaction" && row.w === "Client:ClientRead" ? "idle-in-tx (app working)" : `${row.w} [${row.q.replace(/\s+/g, " ").trim()}]`;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
          samples++;
          await sleep(everyMs);
        }
      })();
    },
    stop() {
      running = false;
    },
    async result() {
      await loop.catch(() => {});
      await client.end().catch(() => {});
      const total = [...counts.values()].reduce((a, b) => a + b, 0);
      return Object.fromEntries(
        [...counts.entries()]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 12)
          .map(([k, v]) => [k, `${((v / Math.max(1, total)) * 100).toFixed(0)}% (avg ${(v / Math.max(1, samples)).toFixed(2)} backends)`]),
      );
    },
  };
}
