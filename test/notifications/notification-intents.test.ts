/** Unit tests of what the notifier reads out of an event (recipients are resolved in SQL). */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { MemberSchema } from "../../gen/parley/v1/conversation_pb.ts";
import { EventSchema, MemberAddedSchema, MessageCreatedSchema, MessageEditedSchema } from "../../gen/parley/v1/event_pb.ts";
import { MessageSchema } from "../../gen/parley/v1/message_pb.ts";
import type { StoredEvent } from "../../src/log/event-log.ts";
import { notificationIntents } from "../../src/workers/notifier.ts";

const CONV = "0190a0b0-0000-7000-8000-000000000001";
const EVENT = "0190a0b0-0000-7000-8000-0000000000e1";

function stored(kind: StoredEvent["event"]["kind"], conversationId: string | null = CONV): StoredEvent {
  const event = create(EventSchema, { id: EVENT, actorId: "alice", conversationId: conversationId ?? "", kind });
  return { partition: 0, position: 1n, conversationId, targetUserId: null, event, payload: toBinary(EventSchema, event) };
}

function sent(fields: Partial<{ mentionedUserIds: string[]; mentionsEveryone: boolean; replyToSeq: bigint }>): StoredEvent {
  const message = create(MessageSchema, { seq: 7n, senderId: "alice", conversationId: CONV, ...fields });
  return stored({ case: "messageCreated", value: create(MessageCreatedSchema, { message }) });
}

describe("notificationIntents", () => {
  it("reads one intent per mentioned user, one for everyone and one for the reply", () => {
    const intents = notificationIntents(sent({ mentionedUserIds: ["bob", "carol"], mentionsEveryone: true, replyToSeq: 3n }));
    assert.deepEqual(
      intents.map((i) => [i.what, i.userId, i.messageSeq, i.replyToSeq]),
      [
        ["mention", "bob", 7n, null],
        ["mention", "carol", 7n, null],
        ["everyone", null, 7n, null],
        ["reply", null, 7n, 3n],
      ],
    );
    assert.ok(intents.every((i) => i.eventId === EVENT && i.conversationId === CONV && i.actorId === "alice"));
  });

  it("reads nothing from a plain message", () => {
    assert.deepEqual(notificationIntents(sent({})), []);
  });

  it("reads the added member from member_added, with no message", () => {
    const member = create(MemberSchema, { userId: "dave" });
    const intents = notificationIntents(stored({ case: "memberAdded", value: create(MemberAddedSchema, { member }) }));
    assert.deepEqual(intents.map((i) => [i.what, i.userId, i.messageSeq]), [["added", "dave", 0n]]);
  });

  it("ignores edits (mentions are fixed at send) and events addressed to a user alone", () => {
    const message = create(MessageSchema, { seq: 7n, mentionedUserIds: ["bob"] });
    assert.deepEqual(notificationIntents(stored({ case: "messageEdited", value: create(MessageEditedSchema, { message }) })), []);
    const member = create(MemberSchema, { userId: "dave" });
    assert.deepEqual(notificationIntents(stored({ case: "memberAdded", value: create(MemberAddedSchema, { member }) }, null)), []);
  });
});
