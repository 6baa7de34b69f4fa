export { ConnectionRegistry, type StreamInfo, type StreamRecorder } from "./connection-registry.ts";
export { ConnectionService } from "./connection-service.ts";
export { createRegistryMetrics, type RegistryMetrics } from "./registry-metrics.ts";
