/**
 * A real three-server NATS JetStream cluster for the tests: free loopback ports (never the shared
 * NATS at 4222), data in a temporary directory, servers that can be SIGKILLed and restarted. The
 * process handling is the one `npm run cluster` uses (src/cli/nats-cluster-process.ts); servers
 * never outlive the mocha process.
 */
import { findNatsServer, startNatsCluster as startProcesses, type NatsCluster, type NatsClusterOptions } from "../../src/cli/nats-cluster-process.ts";

export type { NatsCluster, NatsClusterOptions };

/** Whether a cluster can be started here (nats-server is installed). */
export function natsClusterAvailable(): boolean {
  return findNatsServer() !== null;
}

/**
 * Starts the cluster and waits until every server routes to the others and JetStream has a meta
 * leader. Stop it with stop() in an after hook.
 */
export function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  return startProcesses({ clusterName: "parley-test", ...options });
}
