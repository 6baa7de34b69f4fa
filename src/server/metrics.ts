/**
 * Prometheus metrics, on their own port so they are never exposed with the API. Each app
 * has its own registry, so several apps in one process (tests) do not collide.
 */
import http from "node:http";
import type net from "node:net";
import { collectDefaultMetrics, Counter, Histogram, Registry } from "prom-client";

export interface RpcMetrics {
  readonly registry: Registry;
  observe(rpc: string, code: string, seconds: number): void;
}

export function createRpcMetrics(): RpcMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "parley_" });
  const total = new Counter({ name: "parley_rpc_total", help: "RPCs handled, by method and code", labelNames: ["rpc", "code"], registers: [registry] });
  const duration = new Histogram({
    name: "parley_rpc_duration_seconds",
    help: "RPC handling time, by method",
    labelNames: ["rpc"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return {
    registry,
    observe(rpc, code, seconds) {
      total.inc({ rpc, code });
      duration.observe({ rpc }, seconds);
    },
  };
}

/** Serves GET /metrics; resolves with the bound port. */
export async function startMetricsServer(registry: Registry, port: number, host: string): Promise<http.Server & { port: number }> {
  const server = http.createServer(async (req, res) => {
    if (req.method !== "GET" || req.url !== "/metrics") {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader("Content-Type", registry.contentType);
    res.end(await registry.metrics());
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return Object.assign(server, { port: (server.address() as net.AddressInfo).port });
}
