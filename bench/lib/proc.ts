/**
 * What processes use, read from /proc: CPU time (per process, every PostgreSQL process, the
 * whole machine) and resident memory. Linux only.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import { round, sleep } from "./util.ts";

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User and system CPU seconds. */
export interface Cpu {
  user: number;
  system: number;
}
export const ZERO: Cpu = { user: 0, system: 0 };
export const plus = (a: Cpu, b: Cpu): Cpu => ({ user: a.user + b.user, system: a.system + b.system });
export const minus = (a: Cpu, b: Cpu): Cpu => ({ user: a.user - b.user, system: a.system - b.system });

/** The command name and CPU time of a process, or null if it is gone. */
export function procCpu(pid: number | string): { comm: string; cpu: Cpu } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const open = stat.indexOf("(");
  const close = stat.lastIndexOf(")");
  const fields = stat.slice(close + 2).split(" "); // fields[0] is field 3 (state); utime, stime are fields 14, 15
  return { comm: stat.slice(open + 1, close), cpu: { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK } };
}

/** Pids of every process whose command name is `comm` (e.g. "postgres", "nats-server"). */
export function pidsByComm(comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    if (procCpu(entry)?.comm === comm) pids.push(Number(entry));
  }
  return pids;
}

/** CPU time of every process named `comm`, by pid. */
export function cpuByComm(comm: string): Map<number, Cpu> {
  const result = new Map<number, Cpu>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const proc = procCpu(entry);
    if (proc?.comm === comm) result.set(Number(entry), proc.cpu);
  }
  return result;
}

/** CPU time of the whole machine: busy (user incl. nice; system incl. irq, softirq, steal) and in total. */
export function machineCpu(): { busy: Cpu; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number) as number[];
  const busy = { user: (user! + nice!) / CLK_TCK, system: (system! + irq! + softirq! + steal!) / CLK_TCK };
  return { busy, total: busy.user + busy.system + (idle! + iowait!) / CLK_TCK };
}

/** Cores busy on the whole machine over `ms` (how noisy it is before a run). */
export async function busyCores(ms = 1000): Promise<number> {
  const a = machineCpu();
  await sleep(ms);
  const b = machineCpu();
  const busy = minus(b.busy, a.busy);
  return round(((busy.user + busy.system) / (b.total - a.total)) * os.cpus().length);
}

/** Resident set size of a process in KiB (VmRSS), or null if it is gone. */
export function rssKiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Peak resident set size of a process in KiB (VmHWM), or null if it is gone. */
export function peakRssKiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/**
 * CPU accounting over a window for named processes (label → pid), this process, every
 * PostgreSQL process and the whole machine. "other" is whatever else ran meanwhile.
 */
export class CpuMeter {
  readonly #pids: Record<string, number>;
  #start: ReturnType<CpuMeter["snapshot"]> | null = null;
  constructor(pids: Record<string, number>) {
    this.#pids = pids;
  }
  snapshot() {
    const self = process.cpuUsage();
    return {
      named: Object.fromEntries(Object.entries(this.#pids).map(([label, pid]) => [label, procCpu(pid)?.cpu ?? ZERO])) as Record<string, Cpu>,
      bench: { user: self.user / 1e6, system: self.system / 1e6 },
      postgres: cpuByComm("postgres"),
      machine: machineCpu(),
      at: performance.now(),
    };
  }
  start(): void {
    this.#start = this.snapshot();
  }
  /** Cores used since start() (1.0 = one core busy for the whole window). */
  stop(): CpuReport {
    const a = this.#start ?? this.snapshot();
    const b = this.snapshot();
    const wall = (b.at - a.at) / 1000;
    const cores = os.cpus().length;
    let postgres = ZERO;
    for (const [pid, cpu] of b.postgres) postgres = plus(postgres, minus(cpu, a.postgres.get(pid) ?? ZERO));
    const total = b.machine.total - a.machine.total;
    const busyShare = minus(b.machine.busy, a.machine.busy);
    const machine = { user: (busyShare.user / total) * cores * wall, system: (busyShare.system / total) * cores * wall };
    const perCore = (cpu: Cpu) => round((cpu.user + cpu.system) / Math.max(1e-9, wall));
    const named: Record<string, number> = {};
    let accounted = plus(postgres, minus(b.bench, a.bench));
    for (const label of Object.keys(this.#pids)) {
      const used = minus(b.named[label]!, a.named[label]!);
      named[label] = perCore(used);
      accounted = plus(accounted, used);
    }
    return {
      wallSeconds: round(wall),
      cores,
      ...named,
      bench: perCore(minus(b.bench, a.bench)),
      postgres: perCore(postgres),
      other: perCore(minus(machine, accounted)),
      machine: perCore(machine),
    };
  }
}

export type CpuReport = { wallSeconds: number; cores: number; bench: number; postgres: number; other: number; machine: number } & Record<string, number>;

/** "nodeA 0.61  nodeB 0.40  bench 0.50 ..." */
export function formatCpu(report: CpuReport): string {
  return Object.entries(report)
    .filter(([k]) => k !== "wallSeconds" && k !== "cores")
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join("   ") + `   (cores, of ${report.cores})`;
}

/**
 * Seconds the threads of a process have spent runnable but waiting for a CPU (the second field
 * of /proc/<pid>/task/<tid>/schedstat, summed over its threads), or null if it is gone. Over a
 * window, its growth divided by the window's length is how many of the process's threads were
 * waiting for a core on average: near 0 on a quiet machine, large when others take the cores.
 */
export function runQueueWaitSeconds(pid: number): number | null {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let ns = 0;
  for (const tid of tasks) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[1]);
    } catch {
      // thread gone
    }
  }
  return ns / 1e9;
}
