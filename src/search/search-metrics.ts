/** Search metrics, on the app's registry (served on METRICS_PORT). */
import { Histogram, type Registry } from "prom-client";

export interface SearchMetrics {
  /** Time from an event's commit to the index having it, in seconds. */
  observeLag(seconds: number): void;
}

export function createSearchMetrics(registry: Registry): SearchMetrics {
  const lag = new Histogram({
    name: "parley_search_index_lag_seconds",
    help: "Time from a message change's commit (its event's created_at) until the search index has it",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  return { observeLag: (seconds) => lag.observe(Math.max(0, seconds)) };
}
