/** Prometheus metrics of the connection registry: what it costs the database, and whether its writes fail. */
import { Counter, Gauge, type Registry } from "prom-client";

/** The kinds of statement the registry sends. */
export type RegistryStatement = "insert" | "delete" | "heartbeat" | "sweep";

export interface RegistryMetrics {
  statements(kind: RegistryStatement, count: number): void;
  failed(kind: RegistryStatement): void;
  setStreams(count: number): void;
}

export function createRegistryMetrics(registry: Registry): RegistryMetrics {
  const statements = new Counter({
    name: "parley_registry_statements_total",
    help: "SQL statements the connection registry sent (opens and closes go out in batches)",
    labelNames: ["kind"],
    registers: [registry],
  });
  const failures = new Counter({
    name: "parley_registry_write_failures_total",
    help: "Registry writes that failed and are retried (a lagging listing)",
    labelNames: ["kind"],
    registers: [registry],
  });
  const streams = new Gauge({ name: "parley_registry_streams", help: "Streams this node has registered", registers: [registry] });
  return {
    statements: (kind, count) => statements.inc({ kind }, count),
    failed: (kind) => failures.inc({ kind }),
    setStreams: (count) => streams.set(count),
  };
}
