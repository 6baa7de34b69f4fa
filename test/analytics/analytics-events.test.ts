/** Which events change which figure (pure: no server). */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { analyticsChangeOf } from "../../src/analytics/analytics-events.ts";
import { storedEventFrom } from "../../src/log/event-log.ts";

const CONVERSATION = "0190c0de-0000-7000-8000-000000000001";
const STORY = "0190c0de-0000-7000-8000-000000000002";

function stored(kind: Event["kind"], route: { conversationId?: string; targetUserId?: string }) {
  const payload = toBinary(EventSchema, create(EventSchema, { id: "e", kind }));
  return storedEventFrom(0, 1n, route.conversationId ?? null, route.targetUserId ?? null, payload);
}

describe("analytics: what an event changes", () => {
  it("a sent message counts in its created_at buckets, for its sender", () => {
    const change = analyticsChangeOf(
      stored({ case: "messageCreated", value: { message: { seq: 3n, senderId: "ann", createdAt: timestampFromMs(1_800_000_000_123) } } } as Event["kind"], { conversationId: CONVERSATION }),
    );
    assert.deepEqual(change, { kind: "message", conversationId: CONVERSATION, createdAt: new Date(1_800_000_000_123), senderId: "ann" });
  });

  it("a story counts once, in the author's copy, not in each copy for the audience", () => {
    const kind = { case: "storyPosted", value: { story: { id: STORY, authorId: "ann", createdAt: timestampFromMs(1_800_000_000_000) } } } as Event["kind"];
    assert.equal(analyticsChangeOf(stored(kind, { targetUserId: "bob" })), null);
    assert.deepEqual(analyticsChangeOf(stored(kind, { targetUserId: "ann" })), {
      kind: "story", authorId: "ann", storyId: STORY, postedAt: new Date(1_800_000_000_000), posted: 1, views: 0, reactions: 0, viewerId: null,
    });
  });

  it("a story reaction taken back counts minus one; a view adds its viewer", () => {
    const back = analyticsChangeOf(stored({ case: "storyReacted", value: { storyId: STORY, emoji: "👍", userId: "bob", added: false } } as Event["kind"], { targetUserId: "ann" }));
    assert.equal(back?.kind === "story" && back.reactions, -1);
    const view = analyticsChangeOf(stored({ case: "storyViewed", value: { storyId: STORY, viewerId: "bob" } } as Event["kind"], { targetUserId: "ann" }));
    assert.deepEqual(view?.kind === "story" && [view.authorId, view.views, view.viewerId], ["ann", 1, "bob"]);
  });

  it("edits, reads and events scrubbed by retention (no kind left) change nothing", () => {
    assert.equal(analyticsChangeOf(stored({ case: "messageEdited", value: { message: { seq: 1n } } } as Event["kind"], { conversationId: CONVERSATION })), null);
    assert.equal(analyticsChangeOf(stored({ case: "readPositionMoved", value: { userId: "ann", lastReadSeq: 4n } } as Event["kind"], { conversationId: CONVERSATION })), null);
    assert.equal(analyticsChangeOf(stored({ case: undefined }, { conversationId: CONVERSATION })), null);
  });
});
