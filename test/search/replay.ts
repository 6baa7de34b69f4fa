/**
 * Replays committed events the way the bus can: republishes an event already in a server's
 * JetStream events stream, unchanged, under a new Nats-Msg-Id (so JetStream stores it again
 * and every durable consumer sees it once more, late and out of order). Needs the real NATS.
 */
import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { connect, headers as natsHeaders, type NatsConnection, type StoredMsg } from "nats";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import { testNatsUrl } from "../helpers/realtime.ts";
import type { TestServer } from "../helpers/test-server.ts";

/** A committed event as it sits in the stream. */
export interface StreamedEvent {
  readonly event: Event;
  readonly stored: StoredMsg;
}

export class EventReplayer {
  readonly #nc: NatsConnection;
  readonly #stream: string;

  private constructor(nc: NatsConnection, stream: string) {
    this.#nc = nc;
    this.#stream = stream;
  }

  /** Connects to the NATS of a server started with startRealtimeServer (its NATS_PREFIX). */
  static async forServer(server: TestServer): Promise<EventReplayer> {
    const servers = testNatsUrl();
    const prefix = server.env.NATS_PREFIX;
    if (!servers || !prefix) throw new Error("replaying events needs a server on the real NATS");
    // The stream name the server derives from its prefix (src/log/subjects.ts).
    const stream = `${prefix.toUpperCase().replace(/-/g, "_")}_EVENTS`;
    return new EventReplayer(await connect({ servers, timeout: 2_000 }), stream);
  }

  /** Every event in the stream, oldest first (the server should be a test's own: small). */
  async all(): Promise<StreamedEvent[]> {
    const jsm = await this.#nc.jetstreamManager();
    const { state } = await jsm.streams.info(this.#stream);
    const out: StreamedEvent[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
      const stored = await jsm.streams.getMessage(this.#stream, { seq }).catch(() => null);
      if (stored) out.push({ event: fromBinary(EventSchema, stored.data), stored });
    }
    return out;
  }

  /** The first event in the stream that matches, or a failure naming what was looked for. */
  async find(match: (e: Event) => boolean, what: string): Promise<StreamedEvent> {
    const found = (await this.all()).find((s) => match(s.event));
    if (!found) throw new Error(`no ${what} in the events stream ${this.#stream}`);
    return found;
  }

  /** Publishes the event again: same subject, payload and headers, a new message id. */
  async republish({ stored }: StreamedEvent): Promise<void> {
    const h = natsHeaders();
    for (const key of stored.header?.keys() ?? []) {
      if (key.toLowerCase() === "nats-msg-id") continue;
      for (const value of stored.header.values(key)) h.append(key, value);
    }
    await this.#nc.jetstream().publish(stored.subject, stored.data, { msgID: randomUUID(), headers: h });
  }

  async close(): Promise<void> {
    await this.#nc.close();
  }
}

/** Matches the message_created event of the message. */
export const createdEventOf = (messageId: string) => (e: Event) =>
  e.kind.case === "messageCreated" && e.kind.value.message?.id === messageId;

/** Matches the message_edited event that produced this version of the message. */
export const editedEventOf = (messageId: string, version: number) => (e: Event) =>
  e.kind.case === "messageEdited" && e.kind.value.message?.id === messageId && e.kind.value.message.version === version;
