/**
 * What the read-path tests (issue 21) share: loading many messages quickly through the public
 * API, walking paged calls while checking each page, and naming ids in failure messages.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { Clients } from "../helpers/test-server.ts";

/** How many sends run at once while loading data (enough to keep both cores busy). */
const SEND_CONCURRENCY = 64;

/** One message to send: who sends it (their clients), where, and the text. */
export interface Outgoing {
  clients: Clients;
  conversationId: string;
  text: string;
}

/**
 * Sends every message through SendMessage, many at a time; returns the stored messages in the
 * order of `outgoing`. Sends to one conversation may commit in any order.
 */
export async function sendAll(outgoing: readonly Outgoing[]): Promise<Message[]> {
  const stored: Message[] = new Array(outgoing.length);
  let next = 0;
  async function worker(): Promise<void> {
    for (let i = next++; i < outgoing.length; i = next++) {
      const o = outgoing[i]!;
      const res = await o.clients.messages.sendMessage({
        conversationId: o.conversationId,
        clientMessageId: randomUUID(),
        content: { case: "text", value: o.text },
      });
      if (!res.message) throw new Error("SendMessage returned no message");
      stored[i] = res.message;
    }
  }
  await Promise.all(Array.from({ length: SEND_CONCURRENCY }, worker));
  return stored;
}

/** The entries that occur more than once. */
export function duplicatesOf<T>(items: readonly T[]): T[] {
  const seen = new Set<T>();
  const twice = new Set<T>();
  for (const item of items) (seen.has(item) ? twice : seen).add(item);
  return [...twice];
}

/** A short list of ids for a failure message: the count and the first few. */
export function some(ids: readonly string[], max = 5): string {
  return `${ids.length} [${ids.slice(0, max).join(", ")}${ids.length > max ? ", …" : ""}]`;
}

/** Asserts that the walk holds each expected id exactly once and nothing else. */
export function assertExactlyOnce(walked: readonly string[], expected: Iterable<string>, what: string): void {
  const want = new Set(expected);
  const dup = duplicatesOf(walked);
  assert.deepEqual(dup, [], `${what}: no hit twice, but ${some(dup)} came twice`);
  const missing = [...want].filter((id) => !walked.includes(id));
  const unexpected = walked.filter((id) => !want.has(id));
  assert.ok(
    missing.length === 0 && unexpected.length === 0,
    `${what}: every match exactly once (expected ${want.size}, walked ${walked.length}); missing ${some(missing)}, unexpected ${some(unexpected)}`,
  );
}
