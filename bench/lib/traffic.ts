/**
 * Open-loop paced traffic with send→deliver tracking, and the client pieces it needs: bench
 * users with tokens, Subscribe streams, sender routes (lean raw gRPC or connect-node), and a
 * row count of the messages persisted. Shared by bench:feed (pairs, group, reactions) and
 * bench:peer (200 users 1:1 against the ejabberd peer).
 */
import pg from "pg";
import { createClient, type Client } from "@connectrpc/connect";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { EndReason, EventService } from "../../gen/parley/v1/event_service_pb.ts";
import { MessageService } from "../../gen/parley/v1/message_service_pb.ts";
import { UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { mintToken } from "../../src/auth/index.ts";
import type { BenchDatabase } from "./database.ts";
import type { Connection } from "./grpc.ts";
import { RawGrpcConnection } from "./raw-grpc.ts";
import { Samples } from "./stats.ts";
import { eachLimited, ErrorTally, round, sleep } from "./util.ts";

// ---------------------------------------------------------------------------------------
// Users and tokens

export interface User {
  id: string;
  headers: { authorization: string };
}

/** Mints (and caches) one bearer token per user id with the nodes' JWT settings. */
export class Tokens {
  readonly #cache = new Map<string, string>();
  readonly #secret: string;
  readonly #issuer: string;
  readonly #audience: string;
  constructor(secret: string, issuer: string, audience: string) {
    this.#secret = secret;
    this.#issuer = issuer;
    this.#audience = audience;
  }
  async authorization(userId: string): Promise<string> {
    let value = this.#cache.get(userId);
    if (value === undefined) {
      value = `Bearer ${await mintToken({ secret: this.#secret, issuer: this.#issuer, audience: this.#audience, userId, expiresIn: "2h" })}`;
      this.#cache.set(userId, value);
    }
    return value;
  }
  /** Users `<prefix>-0` … `<prefix>-(n-1)` with their tokens. */
  async makeUsers(prefix: string, n: number): Promise<User[]> {
    const users: User[] = [];
    for (let i = 0; i < n; i++) {
      const id = `${prefix}-${i}`;
      users.push({ id, headers: { authorization: await this.authorization(id) } });
    }
    return users;
  }
}

/** GetMe once per user (creates the user row), in batches over the given connections. */
export async function ensureUsers(users: readonly User[], connections: readonly Connection[], callTimeoutMs: number, concurrency = 64): Promise<void> {
  const clients = connections.map((c) => createClient(UserService, c.transport));
  await eachLimited(users, concurrency, async (user, i) => {
    await clients[i % clients.length]!.getMe({}, { headers: user.headers, timeoutMs: callTimeoutMs });
  });
}

// ---------------------------------------------------------------------------------------
// Subscribe streams

export function endReasonName(reason: EndReason): string {
  return Object.entries(EndReason).find(([, v]) => v === reason)?.[0] ?? String(reason);
}

/** One Subscribe stream and what it has seen. */
export class Stream {
  heartbeats = 0;
  events = 0;
  /** Why it ended; null while open. */
  ended: string | null = null;
  readonly caughtUp: Promise<void>;
  readonly done: Promise<void>;
  readonly #abort = new AbortController();

  constructor(client: Client<typeof EventService>, user: User, onEvent: (event: Event, at: number) => void) {
    let caughtUp!: () => void;
    let failed!: (error: Error) => void;
    this.caughtUp = new Promise<void>((resolve, reject) => ((caughtUp = resolve), (failed = reject)));
    this.caughtUp.catch(() => {});
    this.done = (async () => {
      try {
        for await (const res of client.subscribe({}, { headers: user.headers, signal: this.#abort.signal })) {
          const frame = res.frame;
          switch (frame.case) {
            case "event":
              this.events++;
              onEvent(frame.value, performance.now());
              break;
            case "caughtUp":
              caughtUp();
              break;
            case "heartbeat":
              this.heartbeats++;
              break;
            case "ending":
              this.ended = `ending ${endReasonName(frame.value.reason)}`;
              break;
            case "resyncRequired":
              this.ended = "resync required";
              break;
          }
        }
        this.ended ??= "closed by the server";
      } catch (error) {
        this.ended ??= this.#abort.signal.aborted ? "aborted" : `error: ${(error as Error).message}`;
      }
      failed(new Error(`stream of ${user.id} ended before caught_up: ${this.ended}`));
    })();
  }

  get open(): boolean {
    return this.ended === null;
  }

  close(): void {
    this.#abort.abort();
  }
}

/**
 * Opens one stream per user (user i on connections[i % n]) and waits until each is caught
 * up. onEvent gets the stream's number: firstIndex + i.
 */
export async function openStreams(
  users: readonly User[],
  connections: readonly Connection[],
  onEvent: (event: Event, at: number, stream: number) => void,
  firstIndex = 0,
  concurrency = 128,
): Promise<Stream[]> {
  const clients = connections.map((c) => createClient(EventService, c.transport));
  const streams: Stream[] = new Array(users.length);
  await eachLimited(users, concurrency, async (user, i) => {
    const stream = new Stream(clients[i % clients.length]!, user, (event, at) => onEvent(event, at, firstIndex + i));
    streams[i] = stream;
    await withTimeout(stream.caughtUp, 30_000, `stream of ${user.id} not caught up`);
  });
  return streams;
}

export async function closeStreams(streams: readonly Stream[]): Promise<void> {
  for (const s of streams) s?.close();
  await Promise.all(streams.map((s) => s?.done));
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------
// Sending

/** Wall-clock ms of a performance.now() reading. */
export const wall = (perfTime: number) => performance.timeOrigin + perfTime;

/**
 * A message text that starts with its scheduled send time (wall ms) and its number, padded
 * with filler to `bytes` (never shorter than that head).
 */
export function text(scheduledAt: number, i: number, bytes: number): string {
  const head = `${wall(scheduledAt).toFixed(3)} #${i} `;
  return head + "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt".repeat(2).slice(0, Math.max(0, bytes - head.length));
}

/** How one sender sends into one conversation. */
export interface Route {
  send(clientMessageId: string, text: string): Promise<unknown>;
}

export type SenderClient = "raw" | "connect";

/**
 * Sender connections to a node: lean raw HTTP/2 gRPC (raw) or connect-node's client
 * (connect, over the given connections). Returns route(k, user, conversationId): a route on
 * connection k % n.
 */
export function senderConnections(baseUrl: string, connect: readonly Connection[], kind: SenderClient, callTimeoutMs: number) {
  if (kind === "connect") {
    const clients = connect.map((c) => createClient(MessageService, c.transport));
    return (k: number, user: User, conversationId: string): Route => {
      const client = clients[k % clients.length]!;
      return { send: (clientMessageId, text) => client.sendMessage({ conversationId, clientMessageId, content: { case: "text", value: text } }, { headers: user.headers, timeoutMs: callTimeoutMs }) };
    };
  }
  const raw = Array.from({ length: connect.length }, () => new RawGrpcConnection(baseUrl));
  return (k: number, user: User, conversationId: string): Route => {
    const connection = raw[k % raw.length]!;
    return {
      send: (clientMessageId, text) =>
        connection.unary(MessageService.method.sendMessage, { conversationId, clientMessageId, content: { case: "text", value: text } }, user.headers, callTimeoutMs),
    };
  };
}

const SENT = 1;
const ACKED = 2;
const FAILED = 3;

/** slotOf's answer for an event a stream gets by design but that is not counted (the sender's own copy). */
export const IGNORED = -2;

export interface PacedOptions {
  /** Seconds of traffic before the measured window. */
  warmupSeconds: number;
  /** Seconds of the measured window. */
  seconds: number;
  /** How long drain() waits at most for deliveries still under way. */
  drainMs: number;
  /** Message text length (at least the "<send time> #<i> " head). */
  textBytes: number;
}

/**
 * Sends message i at t0 + i/rate through routeOf(i) (or routes[i % routes.length]), whatever
 * happened to the earlier ones. Each message should reach `fanout` streams; deliver() is fed
 * every event of every stream and matches messages by client_message_id.
 */
export class PacedTraffic {
  readonly #routeOf: (i: number) => Route;
  readonly #rate: number;
  readonly #fanout: number;
  readonly #tag: string;
  readonly #options: PacedOptions;
  readonly total: number;
  readonly state: Uint8Array;
  readonly delivered: Uint16Array;
  readonly #latencies = new Samples(1 << 16);
  readonly ackLatency = new Samples(1 << 14);
  readonly issueLag = new Samples(1 << 14);
  readonly errors = new ErrorTally();
  inFlight = 0;
  skipped = 0;
  duplicates = 0;
  strangers = 0;
  /** Events slotOf marked IGNORED (e.g. the sender's own copy of its message). */
  ignored = 0;
  deliveriesInWindow = 0;
  t0 = 0;
  /** Index range [first, last) of the messages scheduled in the measured window. */
  readonly first: number;
  readonly last: number;

  readonly #maxInFlight: number;
  /** Which stream should get message i, as slot k of `fanout`, IGNORED, or -1 if it should not. */
  readonly #slotOf: (i: number, stream: number) => number;
  /** Per (message, slot): delivered yet? */
  readonly #slots: Uint8Array;
  misrouted = 0;

  constructor(
    routes: Route[] | ((i: number) => Route),
    rate: number,
    fanout: number,
    tag: string,
    maxInFlight: number,
    slotOf: (i: number, stream: number) => number,
    options: PacedOptions,
  ) {
    this.#routeOf = typeof routes === "function" ? routes : (i) => routes[i % routes.length]!;
    this.#slotOf = slotOf;
    this.#maxInFlight = maxInFlight;
    this.#rate = rate;
    this.#fanout = fanout;
    this.#tag = tag;
    this.#options = options;
    const { warmupSeconds: warmup, seconds } = options;
    this.total = Math.floor(rate * (warmup + seconds));
    this.state = new Uint8Array(this.total);
    this.delivered = new Uint16Array(this.total);
    this.first = Math.ceil(rate * warmup);
    this.last = Math.min(this.total, Math.ceil(rate * (warmup + seconds)));
    this.#slots = new Uint8Array(this.total * fanout);
  }

  #scheduled(i: number): number {
    return this.t0 + (i * 1000) / this.#rate;
  }

  /** Feed every event of every stream here. */
  readonly deliver = (event: Event, at: number, stream: number): void => {
    if (event.kind.case !== "messageCreated") return;
    const message = event.kind.value.message;
    const cmid = message?.clientMessageId ?? "";
    if (!cmid.startsWith(this.#tag)) return this.#stranger();
    const i = Number(cmid.slice(this.#tag.length));
    if (!(i >= 0 && i < this.total)) return this.#stranger();
    const slot = this.#slotOf(i, stream);
    if (slot === IGNORED) return void this.ignored++;
    const body = message!.content.case === "text" ? message!.content.value : "";
    const sentAt = Number(body.slice(0, body.indexOf(" ")));
    if (slot < 0 || slot >= this.#fanout) return void this.misrouted++;
    if (this.#slots[i * this.#fanout + slot]) return void this.duplicates++;
    this.#slots[i * this.#fanout + slot] = 1;
    this.delivered[i]!++;
    if (i >= this.first && i < this.last) this.#latencies.add(wall(at) - sentAt);
    const { warmupSeconds: warmup, seconds } = this.#options;
    if (at >= this.t0 + warmup * 1000 && at < this.t0 + (warmup + seconds) * 1000) this.deliveriesInWindow++;
  };

  #stranger(): void {
    this.strangers++;
  }

  #issue(i: number, now: number): void {
    const at = this.#scheduled(i);
    this.issueLag.add(now - at);
    if (this.inFlight >= this.#maxInFlight) {
      this.skipped++;
      return;
    }
    const route = this.#routeOf(i);
    this.state[i] = SENT;
    this.inFlight++;
    route
      .send(`${this.#tag}${i}`, text(at, i, this.#options.textBytes))
      .then(
        () => {
          this.state[i] = ACKED;
          if (i >= this.first && i < this.last) this.ackLatency.add(performance.now() - at);
        },
        (error: unknown) => {
          this.state[i] = FAILED;
          this.errors.add(error, "send");
        },
      )
      .finally(() => this.inFlight--);
  }

  /** Runs the schedule; calls onWindow(start|end) at the window's edges. */
  async run(onWindow: (edge: "start" | "end") => void): Promise<void> {
    const { warmupSeconds: warmup, seconds } = this.#options;
    this.t0 = performance.now();
    const windowStart = this.t0 + warmup * 1000;
    const windowEnd = this.t0 + (warmup + seconds) * 1000;
    let started = false;
    let i = 0;
    while (i < this.total) {
      const now = performance.now();
      if (!started && now >= windowStart) {
        started = true;
        onWindow("start");
      }
      const due = Math.min(this.total, Math.floor(((now - this.t0) * this.#rate) / 1000) + 1);
      while (i < due) this.#issue(i++, now);
      const wait = this.#scheduled(i) - performance.now();
      await sleep(Math.max(0, Math.min(wait, 5)));
    }
    if (!started) onWindow("start");
    const endWait = windowEnd - performance.now();
    if (endWait > 0) await sleep(endWait);
    onWindow("end");
  }

  /** Waits until every acknowledged send reached all its streams (or drainMs passed). */
  async drain(): Promise<number> {
    const started = performance.now();
    while (performance.now() - started < this.#options.drainMs) {
      if (this.inFlight === 0 && this.#missing() === 0) break;
      await sleep(50);
    }
    return (performance.now() - started) / 1000;
  }

  #missing(): number {
    let missing = 0;
    for (let i = 0; i < this.total; i++) if (this.state[i] === ACKED && this.delivered[i]! < this.#fanout) missing += this.#fanout - this.delivered[i]!;
    return missing;
  }

  result() {
    let acked = 0;
    let ackedInWindow = 0;
    let undeliveredInWindow = 0;
    let undeliveredTotal = 0;
    let deliveredUnacked = 0;
    /** Deliveries of the window's messages (whenever they arrived, up to the end of the drain). */
    let windowMessagesDelivered = 0;
    const latencies = new Samples(this.#latencies.count + 16);
    for (const v of this.#latencies.sorted()) latencies.add(v);
    for (let i = 0; i < this.total; i++) {
      if (i >= this.first && i < this.last) windowMessagesDelivered += Math.min(this.#fanout, this.delivered[i]!);
      if (this.state[i] === ACKED) {
        acked++;
        const missing = Math.max(0, this.#fanout - this.delivered[i]!);
        undeliveredTotal += missing;
        if (i >= this.first && i < this.last) {
          ackedInWindow++;
          undeliveredInWindow += missing;
          // Never delivered counts as infinitely late: the percentiles must not hide it.
          for (let k = 0; k < missing; k++) latencies.add(Infinity);
        }
      } else if (this.delivered[i]! > 0) deliveredUnacked++;
    }
    const scheduledInWindow = this.last - this.first;
    return {
      scheduled: this.total,
      scheduledInWindow,
      acked,
      ackedInWindow,
      skippedByGenerator: this.skipped,
      errors: this.errors.toJSON(),
      undeliveredInWindow,
      undeliveredTotal,
      /** Deliveries the window's scheduled messages should have made and did not (sent or not). */
      lostInWindow: scheduledInWindow * this.#fanout - windowMessagesDelivered,
      windowMessagesDelivered,
      duplicateDeliveries: this.duplicates,
      misroutedDeliveries: this.misrouted,
      ignoredDeliveries: this.ignored,
      deliveredButFailedSends: deliveredUnacked,
      unexpectedEvents: this.strangers,
      deliveriesInWindow: this.deliveriesInWindow,
      deliveriesPerSecond: round(this.deliveriesInWindow / this.#options.seconds, 1),
      latencyMs: latencies.summary(),
      sendAckMs: this.ackLatency.summary(),
      generatorLagMs: this.issueLag.summary(),
    };
  }
}

/** Rows of the given conversations: all, and those whose created_at falls in [from, to) (wall ms). */
export async function countRows(db: BenchDatabase, conversationIds: readonly string[], fromWallMs: number, toWallMs: number) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const r = await client.query(
      `select count(*)::int as total,
              count(*) filter (where created_at >= to_timestamp($2 / 1000.0) and created_at < to_timestamp($3 / 1000.0))::int as in_window,
              count(distinct (conversation_id, client_message_id))::int as distinct_ids
         from messages where conversation_id = any($1::uuid[])`,
      [conversationIds, fromWallMs, toWallMs],
    );
    return r.rows[0] as { total: number; in_window: number; distinct_ids: number };
  } finally {
    await client.end();
  }
}
