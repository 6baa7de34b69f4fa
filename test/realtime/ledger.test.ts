/**
 * The storm tests judge delivery with DeliveryLedger and assertReceivedExactly; these unit tests
 * show that the judgement fails for each kind of wrong delivery, so a storm test cannot pass
 * by accident.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { MessageSchema, type Message } from "../../gen/parley/v1/message_pb.ts";
import { assertReceivedExactly, DeliveryLedger, key } from "../helpers/ledger.ts";

function message(conversationId: string, seq: number): Message {
  return create(MessageSchema, { id: `m-${conversationId}-${seq}`, conversationId, seq: BigInt(seq) });
}

function created(conversationId: string, seq: number, eventId = `e-${conversationId}-${seq}`): Event {
  return create(EventSchema, {
    id: eventId,
    cursor: `c-${eventId}`,
    conversationId,
    kind: { case: "messageCreated", value: { message: message(conversationId, seq) } },
  });
}

function stored(...entries: Array<[string, number]>): Map<string, Message> {
  return new Map(entries.map(([c, s]) => [key(c, BigInt(s)), message(c, s)]));
}

function ledgerOf(events: Event[]): DeliveryLedger {
  const ledger = new DeliveryLedger("test");
  for (const e of events) ledger.add(e);
  return ledger;
}

describe("DeliveryLedger (the storm tests' judge)", () => {
  const db = stored(["x", 1], ["x", 2], ["x", 3], ["y", 1]);

  it("accepts exactly the stored messages, interleaved across conversations", () => {
    assertReceivedExactly(ledgerOf([created("x", 1), created("y", 1), created("x", 2), created("x", 3)]), db);
  });

  it("fails on a missing message", () => {
    assert.throws(() => assertReceivedExactly(ledgerOf([created("x", 1), created("x", 3), created("y", 1)]), db), /missingCount: 1/);
  });

  it("fails on a duplicate, by key or by event id", () => {
    const twice = [created("x", 1), created("x", 2), created("x", 2), created("x", 3), created("y", 1)];
    assert.throws(() => assertReceivedExactly(ledgerOf(twice), db), /more than once/);
    const sameId = [created("x", 1), created("x", 2), created("x", 3, "e-x-2"), created("y", 1)];
    assert.throws(() => assertReceivedExactly(ledgerOf(sameId), db), /more than once/);
  });

  it("fails when seqs of a conversation arrive out of order", () => {
    const swapped = [created("x", 2), created("x", 1), created("x", 3), created("y", 1)];
    assert.throws(() => assertReceivedExactly(ledgerOf(swapped), db), /order/);
  });

  it("fails on a message the database does not have", () => {
    const extra = [created("x", 1), created("x", 2), created("x", 3), created("x", 4), created("y", 1)];
    assert.throws(() => assertReceivedExactly(ledgerOf(extra), db), /extraCount: 1/);
  });

  it("fails on a stored event without a cursor", () => {
    const noCursor = created("x", 1);
    noCursor.cursor = "";
    assert.throws(() => assertReceivedExactly(ledgerOf([noCursor, created("x", 2), created("x", 3), created("y", 1)]), db), /cursor/);
  });
});
