/**
 * This node's side of the connection registry: it records the streams it serves in
 * PostgreSQL, confirms that it is alive, and sweeps away nodes that stopped confirming.
 *
 * Opens and closes are coalesced: they wait up to FLUSH_DELAY_MS (or until FLUSH_AT_PENDING
 * are pending) and go out as one multi-row insert and one delete, so a stream is listed within
 * a second and 10,000 streams connecting at once cost a handful of statements, not 10,000. A
 * stream that closes before its open was written costs nothing. A batch that fails is kept and
 * tried again; until it succeeds the listing is behind, never wrong for long: a node's rows
 * count only while its heartbeat is fresh.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { RegistryConfig } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { deleteConnections, deleteNode, heartbeatNode, insertConnections, ROWS_PER_STATEMENT, sweepDeadNodes, type ConnectionRow } from "./connection-repository.ts";
import type { RegistryMetrics } from "./registry-metrics.ts";

/** Longest an open or close waits before it is written. */
const FLUSH_DELAY_MS = 100;
/** Pending changes that are written at once instead of waiting. */
const FLUSH_AT_PENDING = 1000;
/** Wait before a failed batch is tried again. */
const RETRY_DELAY_MS = 1000;
/** Longest text kept of a client-supplied header. */
const MAX_HEADER_CHARS = 200;

/** What Subscribe knows of a stream when it opens. */
export interface StreamInfo {
  sessionId: string;
  userId: string;
  /** "grpc", "grpc-web" or "connect". */
  protocol: string;
  /** The request's headers (device id, client version, user agent). */
  headers: Headers;
}

/** How Subscribe tells the registry about its streams (null when the registry is off). */
export interface StreamRecorder {
  opened(stream: StreamInfo): void;
  closed(sessionId: string): void;
}

export interface ConnectionRegistryOptions {
  db: Kysely<Database>;
  nodeId: string;
  config: RegistryConfig;
  logger: Logger;
  metrics: RegistryMetrics;
}

export class ConnectionRegistry implements StreamRecorder {
  readonly #o: ConnectionRegistryOptions;
  /** Every stream open on this node (re-registered if the node's rows were swept). */
  readonly #live = new Map<string, ConnectionRow>();
  #toInsert = new Map<string, ConnectionRow>();
  #toDelete = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #heartbeatTimer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> | null = null;
  #stopped = false;

  constructor(options: ConnectionRegistryOptions) {
    this.#o = options;
  }

  /** Registers the node, forgetting rows a previous run under the same node id left. */
  async start(): Promise<void> {
    await deleteNode(this.#o.db, this.#o.nodeId);
    await heartbeatNode(this.#o.db, this.#o.nodeId);
    this.#heartbeatTimer = setInterval(() => void this.#beat(), this.#o.config.heartbeatMs);
    this.#heartbeatTimer.unref();
  }

  /** Stops writing and deletes this node's rows (its streams have ended by now). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    if (this.#timer) clearTimeout(this.#timer);
    await this.#flushing;
    try {
      await deleteNode(this.#o.db, this.#o.nodeId);
    } catch (error) {
      // Not fatal: the other nodes' sweep deletes the rows once the TTL has passed.
      this.#o.logger.warn({ err: error }, "connection registry could not delete this node's rows; the sweep will");
    }
  }

  opened(stream: StreamInfo): void {
    const { headers } = stream;
    const row: ConnectionRow = {
      session_id: stream.sessionId,
      user_id: stream.userId,
      node_id: this.#o.nodeId,
      device_id: header(headers, "x-parley-device-id"),
      protocol: stream.protocol,
      client_version: header(headers, "x-parley-client-version"),
      user_agent: header(headers, "user-agent"),
      connected_at: new Date(),
    };
    this.#live.set(row.session_id, row);
    this.#o.metrics.setStreams(this.#live.size);
    this.#toInsert.set(row.session_id, row);
    this.#schedule();
  }

  closed(sessionId: string): void {
    if (!this.#live.delete(sessionId)) return;
    this.#o.metrics.setStreams(this.#live.size);
    // Never written: nothing to delete. (One being written now is deleted by the next batch.)
    if (!this.#toInsert.delete(sessionId)) this.#toDelete.add(sessionId);
    this.#schedule();
  }

  /** Streams open on this node. */
  get size(): number {
    return this.#live.size;
  }

  /** Plans the next flush: soon, at once when much is pending, or after `retryInMs` when the last one failed. */
  #schedule(retryInMs?: number): void {
    if (this.#stopped || this.#flushing) return; // the running flush reschedules when it ends
    const pending = this.#toInsert.size + this.#toDelete.size;
    if (pending === 0) return;
    if (pending >= FLUSH_AT_PENDING && retryInMs === undefined) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      this.#startFlush();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.#startFlush();
      }, retryInMs ?? FLUSH_DELAY_MS);
    }
  }

  #startFlush(): void {
    // Cleared in a callback, which always runs after this assignment (a flush with nothing to
    // write may settle at once, and a flag cleared inside it would then stay set for good).
    this.#flushing = this.#flush().then((retryInMs) => {
      this.#flushing = null;
      this.#schedule(retryInMs);
    });
  }

  /**
   * Writes what is pending: inserts before deletes, so a stream opened and closed in one batch
   * ends up absent. Returns the delay before a retry when a statement failed.
   */
  async #flush(): Promise<number | undefined> {
    const inserts = [...this.#toInsert.values()];
    const deletes = [...this.#toDelete];
    this.#toInsert = new Map();
    this.#toDelete = new Set();
    const { metrics } = this.#o;
    let retryInMs: number | undefined;
    try {
      if (inserts.length > 0) {
        metrics.statements("insert", Math.ceil(inserts.length / ROWS_PER_STATEMENT));
        await insertConnections(this.#o.db, inserts);
      }
    } catch (error) {
      metrics.failed("insert");
      this.#o.logger.warn({ err: error, streams: inserts.length }, "connection registry could not record opened streams; retrying");
      // Those closed meanwhile are in #toDelete: deleting a row never written is harmless.
      for (const row of inserts) if (this.#live.has(row.session_id)) this.#toInsert.set(row.session_id, row);
      retryInMs = RETRY_DELAY_MS;
    }
    try {
      if (deletes.length > 0) {
        metrics.statements("delete", Math.ceil(deletes.length / ROWS_PER_STATEMENT));
        await deleteConnections(this.#o.db, deletes);
      }
    } catch (error) {
      metrics.failed("delete");
      this.#o.logger.warn({ err: error, streams: deletes.length }, "connection registry could not remove closed streams; retrying");
      for (const id of deletes) this.#toDelete.add(id);
      retryInMs = RETRY_DELAY_MS;
    }
    return retryInMs;
  }

  /** Confirms the node is alive and sweeps dead ones. A node swept while it was unreachable records its streams again. */
  async #beat(): Promise<void> {
    if (this.#stopped) return;
    const { metrics } = this.#o;
    try {
      metrics.statements("heartbeat", 1);
      const wasMissing = await heartbeatNode(this.#o.db, this.#o.nodeId);
      if (wasMissing) {
        metrics.statements("heartbeat", 1);
        this.#o.logger.warn({ streams: this.#live.size }, "connection registry found this node swept (heartbeats failed for longer than the TTL); recording its streams again");
        for (const [id, row] of this.#live) this.#toInsert.set(id, row);
        this.#schedule();
      }
      const swept = await sweepDeadNodes(this.#o.db, this.#o.config.nodeTtlMs);
      metrics.statements("sweep", swept > 0 ? 2 : 1);
      if (swept > 0) this.#o.logger.info({ nodes: swept }, "connection registry swept nodes that stopped heartbeating");
    } catch (error) {
      metrics.failed("heartbeat");
      this.#o.logger.warn({ err: error }, "connection registry heartbeat failed; trying again at the next one");
    }
  }
}

function header(headers: Headers, name: string): string {
  return [...(headers.get(name) ?? "")].slice(0, MAX_HEADER_CHARS).join("");
}
