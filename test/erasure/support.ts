/** What the erasure tests share: markers to look for, and reading things back. */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { toJsonString } from "@bufbuild/protobuf";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { ErasureFaults } from "../../src/users/index.ts";
import type { Clients } from "../helpers/test-server.ts";

/** A word that appears nowhere else (letters and digits only, so search treats it as one word). */
export function marker(label: string): string {
  return `${label}${randomBytes(6).toString("hex")}`;
}

/** The event as JSON, so a test can look for a string anywhere in it. */
export function eventJson(event: Event): string {
  return toJsonString(EventSchema, event);
}

/** Asserts the message is a tombstone the account's erasure left: no content, mentions or reactions. */
export function assertErased(m: Message | undefined, erasedUser: string, what: string): void {
  assert.ok(m, `${what}: the message is still in the sequence`);
  assert.equal(m.senderId, erasedUser, `${what}: sender`);
  assert.equal(m.content.case, undefined, `${what}: no content`);
  assert.equal(m.deletion?.deletedBy, erasedUser, `${what}: deleted by the erased user`);
  assert.ok(m.deletion?.deletedAt, `${what}: deleted_at`);
  assert.deepEqual(m.mentionedUserIds, [], `${what}: no mentions`);
  assert.equal(m.mentionsEveryone, false, `${what}: no everyone mention`);
  assert.deepEqual(m.reactions, [], `${what}: no reactions`);
}

/** Sends many short texts, a few at a time (so they go through the send batcher together). */
export async function sendMany(clients: Clients, conversationId: string, texts: readonly string[], inFlight = 16): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < texts.length) {
      const text = texts[next++]!;
      await clients.messages.sendMessage({ conversationId, clientMessageId: randomUUID(), content: { case: "text", value: text } });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** The ids of a social list (followers, following, close friends, blocked), first page of 200. */
export function idsOf(entries: readonly { userId: string }[]): string[] {
  return entries.map((e) => e.userId);
}

/**
 * A fault that holds the first erasure run once it has erased some messages, until the test
 * lets it go on (`go`) or fail there (`fail`).
 */
export function holdOnce() {
  let settle!: (error?: Error) => void;
  const decided = new Promise<void>((resolve, reject) => (settle = (error) => (error ? reject(error) : resolve())));
  decided.catch(() => undefined);
  let reached!: () => void;
  const held = new Promise<void>((resolve) => (reached = resolve));
  let armed = true;
  const faults: ErasureFaults = {
    async afterProgress(_userId, erased) {
      if (!armed || erased === 0) return;
      armed = false;
      reached();
      await decided;
    },
  };
  return { faults, held, go: () => settle(), fail: () => settle(new Error("injected: the run stops here")) };
}
