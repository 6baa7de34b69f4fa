/**
 * Talks to a child node's inspector (started with --inspect=127.0.0.1:<port>) to force a
 * full garbage collection and read V8's heap usage, so memory figures are taken after GC
 * has settled rather than whenever V8 last felt like collecting.
 */
import { createWriteStream, writeFileSync } from "node:fs";
import { sleep } from "./util.ts";

export class Inspector {
  readonly #ws: WebSocket;
  #id = 0;
  readonly #pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  #onNotification: ((method: string, params: any) => void) | null = null;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.addEventListener("message", (event) => {
      const msg = JSON.parse(String(event.data));
      if (msg.id === undefined && msg.method) this.#onNotification?.(msg.method, msg.params);
      const waiter = msg.id !== undefined ? this.#pending.get(msg.id) : undefined;
      if (!waiter) return;
      this.#pending.delete(msg.id);
      if (msg.error) waiter.reject(new Error(msg.error.message));
      else waiter.resolve(msg.result);
    });
  }

  static async connect(port: number, timeoutMs = 10_000): Promise<Inspector> {
    const deadline = performance.now() + timeoutMs;
    let url: string | null = null;
    while (url === null) {
      try {
        const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
        url = list[0]?.webSocketDebuggerUrl ?? null;
      } catch {
        // not up yet
      }
      if (url === null) {
        if (performance.now() > deadline) throw new Error(`no inspector on port ${port}`);
        await sleep(100);
      }
    }
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve(), { once: true });
      ws.addEventListener("error", () => reject(new Error(`could not open ${url}`)), { once: true });
    });
    return new Inspector(ws);
  }

  call<T = any>(method: string, params: object = {}, timeoutMs = 30_000): Promise<T> {
    const id = ++this.#id;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`inspector ${method} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full GC (twice, so weak/finalizable garbage goes too), then V8's used/total heap bytes. */
  async gcAndHeap(): Promise<{ usedBytes: number; totalBytes: number }> {
    await this.call("HeapProfiler.collectGarbage");
    await this.call("HeapProfiler.collectGarbage");
    const usage = await this.call<{ usedSize: number; totalSize: number }>("Runtime.getHeapUsage");
    return { usedBytes: usage.usedSize, totalBytes: usage.totalSize };
  }

  /** The node's process.memoryUsage(), evaluated in its main context. */
  async memoryUsage(): Promise<NodeJS.MemoryUsage> {
    const { result } = await this.call<{ result: { value: NodeJS.MemoryUsage } }>("Runtime.evaluate", { expression: "process.memoryUsage()", returnByValue: true });
    return result.value;
  }

  /** Starts the CPU profiler (sampling every intervalUs). */
  async startProfile(intervalUs = 1000): Promise<void> {
    await this.call("Profiler.enable");
    await this.call("Profiler.setSamplingInterval", { interval: intervalUs });
    await this.call("Profiler.start");
  }

  /** Stops the CPU profiler and writes the .cpuprofile to `file`. */
  async stopProfile(file: string): Promise<void> {
    const { profile } = await this.call<{ profile: object }>("Profiler.stop", {}, 120_000);
    writeFileSync(file, JSON.stringify(profile));
  }

  /** Writes a heap snapshot (after a full GC) to `file`; returns its size in bytes. */
  async heapSnapshot(file: string): Promise<number> {
    const out = createWriteStream(file);
    let bytes = 0;
    this.#onNotification = (method, params) => {
      if (method === "HeapProfiler.addHeapSnapshotChunk") {
        bytes += params.chunk.length;
        out.write(params.chunk);
      }
    };
    try {
      await this.call("HeapProfiler.enable");
      await this.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false }, 300_000);
    } finally {
      this.#onNotification = null;
      await new Promise<void>((resolve) => out.end(() => resolve()));
    }
    return bytes;
  }

  close(): void {
    this.#ws.close();
  }
}
