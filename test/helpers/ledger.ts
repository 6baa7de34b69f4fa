/**
 * Bookkeeping for send storms: what was sent and acknowledged, what each subscriber received
 * (across all the streams it opened, in the order it processed them), and the comparison with
 * what the database holds.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { listAllForward } from "./fixtures.ts";
import type { Feed } from "./feed.ts";
import type { Clients } from "./test-server.ts";

/** "conversationId#seq" */
export function key(conversationId: string, seq: bigint): string {
  return `${conversationId}#${seq}`;
}

/**
 * What one subscriber processed. Feed by feed, in the order the client read them: each feed is
 * absorbed after it was closed (or while it is the only one open), so arrival order is kept.
 */
export class DeliveryLedger {
  readonly label: string;
  /** Every message_created key in processing order (duplicates included). */
  readonly arrivals: string[] = [];
  readonly #count = new Map<string, number>();
  readonly #lastSeq = new Map<string, bigint>();
  readonly #eventIds = new Map<string, number>();
  readonly orderViolations: string[] = [];
  readonly cursorProblems: string[] = [];
  #absorbed = new WeakMap<Feed, number>();

  constructor(label: string) {
    this.label = label;
  }

  /** Takes the message events of the feed that were not taken yet. */
  absorb(feed: Feed): void {
    const from = this.#absorbed.get(feed) ?? 0;
    const frames = feed.received;
    for (let i = from; i < frames.length; i++) {
      const f = frames[i]!.frame;
      if (f.case === "event") this.add(f.value);
    }
    this.#absorbed.set(feed, frames.length);
  }

  add(e: Event): void {
    if (e.kind.case !== "messageCreated") return;
    const m = e.kind.value.message;
    if (!m) {
      this.orderViolations.push(`message_created event ${e.id} without a message`);
      return;
    }
    if (!e.cursor) this.cursorProblems.push(`message_created ${key(e.conversationId, m.seq)} has an empty cursor`);
    if (e.conversationId !== m.conversationId) {
      this.orderViolations.push(`event conversation ${e.conversationId} ≠ message conversation ${m.conversationId}`);
    }
    const k = key(m.conversationId, m.seq);
    this.arrivals.push(k);
    this.#count.set(k, (this.#count.get(k) ?? 0) + 1);
    if (e.id) this.#eventIds.set(e.id, (this.#eventIds.get(e.id) ?? 0) + 1);
    const last = this.#lastSeq.get(m.conversationId);
    if (last !== undefined && m.seq <= last) {
      this.orderViolations.push(`${m.conversationId.slice(-6)}: seq ${m.seq} arrived after seq ${last}`);
    }
    if (last === undefined || m.seq > last) this.#lastSeq.set(m.conversationId, m.seq);
  }

  /** Distinct keys received. */
  keys(): Set<string> {
    return new Set(this.#count.keys());
  }

  duplicates(): string[] {
    const keys = [...this.#count].filter(([, n]) => n > 1).map(([k, n]) => `${k}×${n}`);
    const ids = [...this.#eventIds].filter(([, n]) => n > 1).map(([id, n]) => `event ${id}×${n}`);
    return [...keys, ...ids];
  }

  has(k: string): boolean {
    return this.#count.has(k);
  }
}

/** Every stored message of the conversations, by key. */
export async function storedMessages(clients: Clients, conversationIds: readonly string[]): Promise<Map<string, Message>> {
  const out = new Map<string, Message>();
  for (const id of conversationIds) {
    for (const m of await listAllForward(clients, id)) out.set(key(id, m.seq), m);
  }
  return out;
}

/**
 * Asserts that the subscriber received exactly the stored messages: nothing missing, nothing
 * extra, no duplicate, and per-conversation seq strictly increasing in arrival order.
 */
export function assertReceivedExactly(ledger: DeliveryLedger, stored: Map<string, Message>, context = ""): void {
  const got = ledger.keys();
  const missing = [...stored.keys()].filter((k) => !got.has(k));
  const extra = [...got].filter((k) => !stored.has(k));
  const where = `${ledger.label}${context ? ` (${context})` : ""}`;
  assert.deepEqual(ledger.duplicates().slice(0, 20), [], `${where}: delivered more than once`);
  assert.deepEqual(ledger.orderViolations.slice(0, 20), [], `${where}: per-conversation order broken`);
  assert.deepEqual(ledger.cursorProblems.slice(0, 20), [], `${where}: cursors`);
  assert.deepEqual(
    { missing: missing.slice(0, 20), missingCount: missing.length, extra: extra.slice(0, 20), extraCount: extra.length },
    { missing: [], missingCount: 0, extra: [], extraCount: 0 },
    `${where}: received ${got.size} distinct messages, the database has ${stored.size}`,
  );
}

/** One send of a storm and what became of it. */
export interface SendRecord {
  conversationId: string;
  clientMessageId: string;
  text: string;
  /** The response, when the send was acknowledged. */
  message?: Message;
  /** The error, when it failed. */
  error?: ConnectError;
}

export interface SendLoopOptions {
  /** Conversations to send to, round-robin with a random start. */
  conversationIds: readonly string[];
  count: number;
  /** Called after each acknowledged send. */
  onAck?: (record: SendRecord) => void;
  /** Stop after the first failed send (the node is gone). */
  stopOnError?: boolean;
  /** Stop early when this returns true. */
  shouldStop?: () => boolean;
  /** Text size in bytes (default small). */
  textBytes?: number;
  /** Sends in flight at once (default 1). */
  concurrency?: number;
}

/** Sends `count` messages and records every outcome. Never throws for a failed send. */
export async function sendLoop(clients: () => Clients, label: string, options: SendLoopOptions): Promise<SendRecord[]> {
  const records: SendRecord[] = [];
  let next = 0;
  let failed = false;
  const start = Math.floor(Math.random() * options.conversationIds.length);
  const worker = async () => {
    for (;;) {
      if (options.shouldStop?.() || (options.stopOnError && failed)) return;
      const i = next++;
      if (i >= options.count) return;
      const conversationId = options.conversationIds[(start + i) % options.conversationIds.length]!;
      const body = `${label} #${i}`;
      const text = options.textBytes ? body.padEnd(options.textBytes, ".") : body;
      const record: SendRecord = { conversationId, clientMessageId: randomUUID(), text };
      records.push(record);
      try {
        const res = await clients().messages.sendMessage({
          conversationId,
          clientMessageId: record.clientMessageId,
          content: { case: "text", value: text },
        });
        record.message = res.message;
        options.onAck?.(record);
      } catch (err) {
        record.error = ConnectError.from(err);
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 1 }, worker));
  return records;
}

/** A summary of send failures by code, for messages. */
export function failureSummary(records: readonly SendRecord[]): string {
  const byCode = new Map<string, number>();
  for (const r of records) if (r.error) byCode.set(Code[r.error.code], (byCode.get(Code[r.error.code]) ?? 0) + 1);
  return [...byCode].map(([c, n]) => `${c}×${n}`).join(", ") || "none";
}
