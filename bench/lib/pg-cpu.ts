/**
 * PostgreSQL CPU of one database over a window, read from /proc: the backends connected to it
 * plus the server's background processes (WAL writer, checkpointer, background writer,
 * autovacuum), which work for every database. Backends of other databases (other people's
 * tests on a shared machine) are left out, unlike a sum over every `postgres` process.
 */
import pg from "pg";
import { minus, plus, procCpu, ZERO, type Cpu } from "./proc.ts";
import { round } from "./util.ts";

export class PgCpuMeter {
  readonly #adminUrl: string;
  readonly #database: string;
  #start: { cpu: Map<number, Cpu>; at: number } | null = null;

  constructor(adminUrl: string, database: string) {
    this.#adminUrl = adminUrl;
    this.#database = database;
  }

  async #pids(): Promise<number[]> {
    const client = new pg.Client({ connectionString: this.#adminUrl });
    await client.connect();
    try {
      const r = await client.query(`select pid from pg_stat_activity where (datname = $1 or backend_type <> 'client backend') and pid <> pg_backend_pid()`, [this.#database]);
      return r.rows.map((row: { pid: number }) => row.pid);
    } finally {
      await client.end();
    }
  }

  #read(pids: readonly number[]): Map<number, Cpu> {
    const cpu = new Map<number, Cpu>();
    for (const pid of pids) {
      const p = procCpu(pid);
      if (p?.comm === "postgres") cpu.set(pid, p.cpu);
    }
    return cpu;
  }

  async start(): Promise<void> {
    const pids = await this.#pids();
    this.#start = { cpu: this.#read(pids), at: performance.now() };
  }

  /** Cores used since start(): the processes there at start, and those that appeared since (from 0). */
  async stop(): Promise<{ cores: number; seconds: number; processes: number }> {
    const at = performance.now();
    const start = this.#start ?? { cpu: new Map<number, Cpu>(), at };
    const pids = new Set([...start.cpu.keys(), ...(await this.#pids())]);
    const end = this.#read([...pids]);
    let used = ZERO;
    for (const [pid, cpu] of end) used = plus(used, minus(cpu, start.cpu.get(pid) ?? ZERO));
    const seconds = (at - start.at) / 1000;
    return { cores: round((used.user + used.system) / Math.max(1e-9, seconds), 3), seconds: round(seconds), processes: end.size };
  }
}
