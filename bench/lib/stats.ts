/** Latency samples and their percentiles. */
import { round } from "./util.ts";

/** A growable array of samples (ms). Infinity marks something that never arrived. */
export class Samples {
  #data: Float64Array;
  #n = 0;
  constructor(initial = 1024) {
    this.#data = new Float64Array(initial);
  }
  add(value: number): void {
    if (this.#n === this.#data.length) {
      const bigger = new Float64Array(this.#data.length * 2);
      bigger.set(this.#data);
      this.#data = bigger;
    }
    this.#data[this.#n++] = value;
  }
  get count(): number {
    return this.#n;
  }
  /** The samples added since the first `from` (in insertion order). */
  tail(from: number): Float64Array {
    return this.#data.slice(from, this.#n);
  }
  sorted(): Float64Array {
    return this.#data.slice(0, this.#n).sort();
  }
  summary(): LatencySummary {
    return summarize(this.sorted());
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summarize(sorted: Float64Array): LatencySummary {
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    p999: round(percentile(sorted, 99.9)),
    max: round(sorted.at(-1) ?? NaN),
    mean: round(sum / Math.max(1, sorted.length)),
  };
}

/** "p50 1.2  p95 3.4  p99 5.6  max 7.8  (n=9)" */
export function formatLatency(s: LatencySummary): string {
  const f = (v: number) => (Number.isFinite(v) ? String(v) : v > 0 ? "∞" : "-");
  return `p50 ${f(s.p50)}   p95 ${f(s.p95)}   p99 ${f(s.p99)}   p99.9 ${f(s.p999)}   max ${f(s.max)}   (n=${s.count})`;
}
