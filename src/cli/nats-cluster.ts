/**
 * `npm run cluster [-- --verbose]`: a three-server NATS JetStream cluster on loopback for trying
 * Parley against a cluster (client ports 4301-4303, routes 6301-6303, monitoring 8301-8303), data
 * in a temporary directory. Prints the NATS_URL to start nodes with; Ctrl-C stops all three and
 * removes the data.
 */
import { parseArgs } from "node:util";
import { startNatsCluster } from "./nats-cluster-process.ts";

const { values } = parseArgs({ options: { verbose: { type: "boolean", default: false } } });
// Routes refused while the servers come up are expected; trouble after that is shown.
let up = false;
const cluster = await startNatsCluster({
  clientPorts: [4301, 4302, 4303],
  clusterPorts: [6301, 6302, 6303],
  monitorPorts: [8301, 8302, 8303],
  onOutput: (node, line) => {
    if (values.verbose || (up && /\[(ERR|WRN|FTL)\]/.test(line))) console.error(`n${node + 1} ${line}`);
  },
});
up = true;

console.log(`NATS cluster of 3 is up (JetStream data in ${cluster.dataDir}).
Start Parley nodes with:
  NATS_URL=${cluster.url} NATS_STREAM_REPLICAS=3 npm start
Monitoring: ${cluster.monitorUrls.join(" ")}
Ctrl-C stops all three.`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping the cluster…");
  await cluster.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
