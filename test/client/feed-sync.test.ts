/**
 * FeedSync alone, on a scripted stream: an event whose handling keeps failing is tried again
 * from the cursor before it, with backoff, then reported and passed over, and the events after
 * it are handled; its cursor is saved only once it is done with.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { SubscribeResponseSchema, type SubscribeResponse } from "../../gen/parley/v1/event_service_pb.ts";
import { FeedSync } from "../../src/client/feed-sync.ts";

const events = ["c1", "c2", "c3"].map((cursor, i) => create(EventSchema, { id: `e${i + 1}`, cursor }));

/** A server that replays every event after the cursor it is given, then holds the stream open. */
function scriptedSubscribe(opened: string[]) {
  return async function* (cursor: string, signal: AbortSignal): AsyncIterable<SubscribeResponse> {
    opened.push(cursor);
    for (const event of events.slice(events.findIndex((e) => e.cursor === cursor) + 1)) {
      yield create(SubscribeResponseSchema, { frame: { case: "event", value: event } });
    }
    await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
  };
}

describe("client feed sync", () => {
  it("tries an event that fails three times, with backoff, then reports it, passes over it and goes on", async () => {
    const opened: string[] = [];
    const handled: string[] = [];
    const skipped: string[] = [];
    let saved = "";
    const controller = new AbortController();
    const sync = new FeedSync({
      subscribe: scriptedSubscribe(opened),
      cursor: async () => saved,
      saveCursor: async (cursor) => void (saved = cursor),
      beforeConnect: async () => {},
      handleEvent: async (event: Event) => {
        if (event.id === "e2") throw new Error("cannot handle e2");
        handled.push(event.id);
      },
      resync: async () => {},
      onLive: () => {},
      onSkipped: (event) => skipped.push(event.id),
      onRestricted: () => assert.fail("no restriction in this script"),
      onSessionEnded: () => assert.fail("no session end in this script"),
      backoff: { initialMs: 20, maxMs: 40 },
    });
    const started = performance.now();
    const running = sync.run(controller.signal);
    while (saved !== "c3" && performance.now() - started < 5_000) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    await running;
    assert.deepEqual(handled, ["e1", "e3"], "the events around the failing one are handled once each");
    assert.deepEqual(skipped, ["e2"], "the failing event is reported once, after its last attempt");
    assert.deepEqual(opened, ["", "c1", "c1"], "it was tried three times, each from the cursor before it");
    assert.equal(saved, "c3");
    assert.ok(performance.now() - started >= 20, "the retries waited (backoff), no tight loop");
  });
});
