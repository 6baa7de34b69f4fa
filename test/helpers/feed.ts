/**
 * Reads an EventService.Subscribe stream the way a client does, keeping every frame so a test
 * can wait for what it expects (with a deadline that fails naming what never came) and look
 * back at everything that arrived.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { EndReason, type SubscribeResponse } from "../../gen/parley/v1/event_service_pb.ts";
import type { Clients } from "./test-server.ts";

/** How long a test waits for something that should happen "now" before failing. */
export const EVENT_DEADLINE_MS = 8_000;

/** Anything with a Subscribe method: Clients or IsolatedClients. */
type EventsClients = Pick<Clients, "events">;

/** Starts a Subscribe call from the cursor; the stream stops when the signal aborts. */
export type FeedSource = (cursor: string, signal: AbortSignal) => AsyncIterable<SubscribeResponse>;

function sourceOf(clients: EventsClients | FeedSource): FeedSource {
  if (typeof clients === "function") return clients;
  return (cursor, signal) => clients.events.subscribe({ cursor }, { signal, timeoutMs: 0 });
}

export interface FeedOptions {
  /** Resume after this cursor; empty or absent starts now. */
  cursor?: string;
  /** Names the feed in failure messages, e.g. "bob@node-a/grpc". */
  label?: string;
  /** Open paused: the stream is started but nothing is read until resume(). */
  paused?: boolean;
}

/** One received frame, with when it arrived. */
export interface Received {
  frame: SubscribeResponse["frame"];
  at: number;
}

/** A Subscribe stream being read in the background. */
export class Feed {
  readonly label: string;
  /** Every frame in arrival order. */
  readonly received: Received[] = [];
  /** The newest non-empty cursor of any processed frame; "" when none arrived yet. */
  lastCursor: string;
  /** Set once the stream is over: normally (null) or with an error. */
  end: { error: ConnectError | null } | undefined;

  readonly #controller = new AbortController();
  readonly #waiters = new Set<() => void>();
  #gate: { promise: Promise<void>; open: () => void } | null = null;
  readonly done: Promise<void>;

  constructor(clients: EventsClients | FeedSource, options: FeedOptions = {}) {
    this.label = options.label ?? "feed";
    this.lastCursor = options.cursor ?? "";
    if (options.paused) this.pause();
    this.done = this.#pump(sourceOf(clients), options.cursor ?? "");
  }

  async #pump(source: FeedSource, cursor: string): Promise<void> {
    const signal = this.#controller.signal;
    try {
      const stream = source(cursor, signal);
      const it = stream[Symbol.asyncIterator]();
      // The first next() starts the call, paused or not, so the stream exists on the server.
      for (let first = true; ; first = false) {
        if (!first) await this.#gate?.promise;
        if (signal.aborted) break;
        const r = await it.next();
        if (r.done || signal.aborted) break;
        this.#record(r.value);
      }
      if (!signal.aborted) this.end = { error: null };
    } catch (err) {
      if (!signal.aborted) this.end = { error: ConnectError.from(err) };
    } finally {
      if (!this.end && !signal.aborted) this.end = { error: null };
      this.#notify();
    }
  }

  #record(res: SubscribeResponse): void {
    const frame = res.frame;
    this.received.push({ frame, at: Date.now() });
    const cursor = frameCursor(frame);
    if (cursor) this.lastCursor = cursor;
    this.#notify();
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Stops reading (the server sees a reader that does not read). */
  pause(): void {
    if (this.#gate) return;
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.#gate = { promise, open };
  }

  /** Reads again after pause(). */
  resume(): void {
    const gate = this.#gate;
    this.#gate = null;
    gate?.open();
  }

  /** Disconnects, as a client going away does. Nothing that arrives afterwards is recorded. */
  close(): void {
    this.#controller.abort();
    this.resume();
  }

  /** Events in arrival order (stored and ephemeral). */
  get events(): Event[] {
    const out: Event[] = [];
    for (const r of this.received) if (r.frame.case === "event") out.push(r.frame.value);
    return out;
  }

  /**
   * Waits until `pick` returns something for a received frame (looking at frames from index
   * `from` on) and returns it with the frame's index. Fails after the deadline, or when the
   * stream ends first, naming `what` and summarising what did arrive.
   */
  async waitFor<T>(
    pick: (frame: SubscribeResponse["frame"], index: number) => T | undefined,
    what: string,
    options: { from?: number; timeoutMs?: number } = {},
  ): Promise<{ value: T; index: number }> {
    const deadline = Date.now() + (options.timeoutMs ?? EVENT_DEADLINE_MS);
    let scanned = options.from ?? 0;
    for (;;) {
      for (; scanned < this.received.length; scanned++) {
        const value = pick(this.received[scanned]!.frame, scanned);
        if (value !== undefined) return { value, index: scanned };
      }
      if (this.end) {
        assert.fail(
          `${this.label}: the stream ended (${this.end.error ? describeError(this.end.error) : "normally"}) before ${what}; ` +
            `received ${this.summary()}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(`${this.label}: no ${what} within ${options.timeoutMs ?? EVENT_DEADLINE_MS} ms; received ${this.summary()}`);
      }
      await this.#changeOrTimeout(left);
    }
  }

  /** Waits for the first event (from index `from`) matching the predicate. */
  async waitForEvent(
    match: (e: Event) => boolean,
    what: string,
    options: { from?: number; timeoutMs?: number } = {},
  ): Promise<{ event: Event; index: number }> {
    const { value, index } = await this.waitFor(
      (f) => (f.case === "event" && match(f.value) ? f.value : undefined),
      what,
      options,
    );
    return { event: value, index };
  }

  /** Waits until `done()` holds (re-checked after every frame). */
  async waitUntil(done: () => boolean, what: string, timeoutMs = EVENT_DEADLINE_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (this.end) {
        assert.fail(`${this.label}: the stream ended (${this.end.error ? describeError(this.end.error) : "normally"}) before ${what}; received ${this.summary()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`${this.label}: not ${what} within ${timeoutMs} ms; received ${this.summary()}`);
      await this.#changeOrTimeout(left);
    }
  }

  /**
   * Waits until the stream is certainly live: a caught_up frame after a cursor, or the first
   * frame of any kind (caught_up or heartbeat) for a stream started without one.
   */
  async ready(timeoutMs = EVENT_DEADLINE_MS): Promise<void> {
    await this.waitFor((f) => (f.case === "caughtUp" || f.case === "heartbeat" ? true : undefined),
      "caught_up or heartbeat frame (the stream never signalled it is live)", { timeoutMs });
  }

  /** Waits for caught_up and returns its index. */
  async caughtUp(timeoutMs = EVENT_DEADLINE_MS): Promise<number> {
    return (await this.waitFor((f) => (f.case === "caughtUp" ? true : undefined), "caught_up frame", { timeoutMs })).index;
  }

  /** Waits until the stream is over; returns how it ended. */
  async ended(what: string, timeoutMs = EVENT_DEADLINE_MS): Promise<{ error: ConnectError | null }> {
    await this.waitUntil(() => this.end !== undefined, `ended (${what})`, timeoutMs);
    return this.end!;
  }

  #changeOrTimeout(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  /** A short description of what arrived, for failure messages. */
  summary(limit = 40): string {
    const parts = this.received.map((r) => describeFrame(r.frame));
    const head = parts.length > limit ? [...parts.slice(0, 10), `… ${parts.length - limit} more …`, ...parts.slice(-(limit - 10))] : parts;
    return `${this.received.length} frame(s): [${head.join(", ")}]` + (this.end ? ` then end(${this.end.error ? describeError(this.end.error) : "ok"})` : "");
  }
}

/** Opens a feed; `await feed.ready()` before relying on live delivery. */
export function openFeed(clients: EventsClients | FeedSource, options: FeedOptions = {}): Feed {
  return new Feed(clients, options);
}

/** Opens a feed and waits until it is live (caught_up or, without a cursor, any first frame). */
export async function openLiveFeed(clients: EventsClients | FeedSource, options: FeedOptions = {}): Promise<Feed> {
  const feed = new Feed(clients, options);
  try {
    if (options.cursor) await feed.caughtUp();
    else await feed.ready();
  } catch (err) {
    feed.close();
    throw err;
  }
  return feed;
}

/** The cursor a frame carries, if any. */
export function frameCursor(frame: SubscribeResponse["frame"]): string {
  switch (frame.case) {
    case "event":
    case "caughtUp":
    case "heartbeat":
    case "resyncRequired":
    case "ending":
      return frame.value.cursor;
    default:
      return "";
  }
}

/** The name of an EndReason value, e.g. "SLOW_CONSUMER". */
export function endReasonName(reason: EndReason): string {
  const name = Object.entries(EndReason).find(([, v]) => v === reason)?.[0];
  return name ?? String(reason);
}

export function describeError(err: ConnectError): string {
  return `${Code[err.code]}: ${err.rawMessage}`;
}

export function describeFrame(frame: SubscribeResponse["frame"]): string {
  switch (frame.case) {
    case "event":
      return describeEvent(frame.value);
    case "caughtUp":
      return "caught_up";
    case "heartbeat":
      return "heartbeat";
    case "resyncRequired":
      return `resync_required(${frame.value.reason})`;
    case "ending":
      return `ending(${endReasonName(frame.value.reason)})`;
    default:
      return "empty frame";
  }
}

export function describeEvent(e: Event): string {
  const conv = e.conversationId ? `${e.conversationId.slice(-6)}:` : "";
  switch (e.kind.case) {
    case "messageCreated":
      return `${conv}msg#${e.kind.value.message?.seq}`;
    case "memberAdded":
      return `${conv}added(${e.kind.value.member?.userId})`;
    case "memberRemoved":
      return `${conv}removed(${e.kind.value.userId}${e.kind.value.left ? ",left" : ""})`;
    case "memberRoleChanged":
      return `${conv}role(${e.kind.value.userId}=${e.kind.value.role})`;
    case "conversationUpdated":
      return `${conv}updated(${e.kind.value.name})`;
    case "reactionAdded":
      return `${conv}+${e.kind.value.emoji}#${e.kind.value.messageSeq}(${e.kind.value.userId},n=${e.kind.value.count})`;
    case "reactionRemoved":
      return `${conv}-${e.kind.value.emoji}#${e.kind.value.messageSeq}(${e.kind.value.userId},n=${e.kind.value.count})`;
    case "readPositionMoved":
      return `${conv}read(${e.kind.value.userId}@${e.kind.value.lastReadSeq})`;
    case "typing":
      return `${conv}typing(${e.kind.value.userId})`;
    case "presenceChanged":
      return `presence(${e.kind.value.userId}=${e.kind.value.online ? "on" : "off"})`;
    default:
      return `${conv}event(?)`;
  }
}

/** Asserts what every stored event carries: an id, a cursor, a conversation, an actor, a time. */
export function assertStoredEvent(e: Event, conversationId: string, actorId?: string): void {
  const what = describeEvent(e);
  assert.ok(e.id, `${what}: a stored event has an id`);
  assert.ok(e.cursor, `${what}: a stored event has a non-empty cursor`);
  assert.equal(e.conversationId, conversationId, `${what}: conversation_id`);
  if (actorId !== undefined) assert.equal(e.actorId, actorId, `${what}: actor_id`);
  assert.ok(e.createdAt, `${what}: created_at is set`);
  const t = timestampMs(e.createdAt!);
  assert.ok(Math.abs(t - Date.now()) < 5 * 60_000, `${what}: created_at ${new Date(t).toISOString()} is about now`);
}

/** Asserts that an ephemeral event (typing, presence) carries no cursor. */
export function assertEphemeralEvent(e: Event): void {
  assert.equal(e.cursor, "", `${describeEvent(e)}: an ephemeral event has an empty cursor`);
}

/** Stored message_created events of a conversation as seqs, in arrival order. */
export function messageSeqs(feed: Feed, conversationId: string): bigint[] {
  return feed.events
    .filter((e) => e.conversationId === conversationId && e.kind.case === "messageCreated")
    .map((e) => (e.kind.case === "messageCreated" ? e.kind.value.message?.seq ?? -1n : -1n));
}

/** The message of a message_created event with this conversation and seq, if it arrived. */
export function isMessage(conversationId: string, seq: bigint): (e: Event) => boolean {
  return (e) => e.conversationId === conversationId && e.kind.case === "messageCreated" && e.kind.value.message?.seq === seq;
}

/**
 * Fails when any frame of the feed matches `bad`. Called after a fence event arrived that the
 * server published after the change, so anything `bad` would have arrived by then.
 */
export function assertNoneArrived(
  feed: Feed,
  bad: (frame: SubscribeResponse["frame"], index: number) => boolean,
  what: string,
): void {
  const hits = feed.received.filter((r, i) => bad(r.frame, i)).map((r) => describeFrame(r.frame));
  assert.deepEqual(hits, [], `${feed.label}: ${what}; received ${feed.summary()}`);
}

/** Polls `check` until it returns true, failing after the deadline with `what`. */
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = EVENT_DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    try {
      if (await check()) return;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      assert.fail(`not ${what} within ${timeoutMs} ms${lastError ? `; last error: ${String(lastError)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}
