/**
 * Registers E2E devices for bench:e2e off the main thread. Opening a key manager on an empty
 * store makes the device's keys and its first 100 signed prekeys (pure-JS tweetnacl: about
 * half a second of CPU per device), so 500 devices take minutes on one core; the bench splits
 * them over a worker per core. Each device is registered through the SDK's own path
 * (E2EKeyManager.open → RegisterDevice with prekeys), and its store's entries are posted back
 * so the main thread can open the same device again from them.
 */
import { parentPort, workerData } from "node:worker_threads";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { withBearerToken } from "../../src/client/bearer-transport.ts";
import { E2EKeyManager } from "../../src/client/e2e/index.ts";
import { MemoryStore } from "../../src/client/storage.ts";
import { eachLimited } from "./util.ts";

/** What the bench hands a worker. */
export interface RegisterJob {
  readonly baseUrl: string;
  /** Users to register one device each for, with a bearer token (without "Bearer "). */
  readonly users: ReadonlyArray<{ readonly userId: string; readonly token: string }>;
  readonly concurrency: number;
  readonly callTimeoutMs: number;
}

/** What a worker posts per device. */
export interface RegisteredDevice {
  readonly userId: string;
  readonly deviceId: string;
  readonly entries: Array<[string, Uint8Array]>;
}

const job = workerData as RegisterJob;
const sessionManager = new Http2SessionManager(job.baseUrl);
const transport = createGrpcTransport({ baseUrl: job.baseUrl, sessionManager, defaultTimeoutMs: job.callTimeoutMs });
try {
  await eachLimited(job.users, job.concurrency, async ({ userId, token }) => {
    const store = new MemoryStore();
    const codec = await E2EKeyManager.open({ store, transport: withBearerToken(transport, () => token), userId, deviceName: "bench:e2e" });
    const device: RegisteredDevice = { userId, deviceId: codec.deviceId, entries: await store.list("") };
    parentPort!.postMessage(device);
  });
} finally {
  sessionManager.abort();
}
