/**
 * Reads the push outbox the way a push gateway would: the JetStream stream `<PREFIX>_PUSH`,
 * one subject per user (`<prefix>.push.<base64url user id>`), each entry a binary
 * parley.v1.PushEntry with the notification id as its Nats-Msg-Id. Only on a real NATS; in
 * embedded mode there is no stream to read from outside the server.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { AckPolicy, connect, DeliverPolicy, type NatsConnection } from "nats";
import { PushEntrySchema, type PushEntry } from "../../../gen/parley/v1/notification_pb.ts";

/** One entry as stored in the stream. */
export interface PushRecord {
  subject: string;
  /** The Nats-Msg-Id header: the notification id. */
  msgId: string;
  entry: PushEntry;
}

export class PushOutbox {
  readonly #nc: NatsConnection;
  readonly #prefix: string;

  private constructor(nc: NatsConnection, prefix: string) {
    this.#nc = nc;
    this.#prefix = prefix;
  }

  /** Opens the outbox of a server configured with these NATS_URL and NATS_PREFIX, or null without NATS. */
  static async open(env: Readonly<Record<string, string | undefined>>): Promise<PushOutbox | null> {
    if (!env.NATS_URL || !env.NATS_PREFIX) return null;
    return new PushOutbox(await connect({ servers: env.NATS_URL, timeout: 2_000 }), env.NATS_PREFIX);
  }

  get stream(): string {
    return `${this.#prefix.toUpperCase().replace(/-/g, "_")}_PUSH`;
  }

  subjectFor(userId: string): string {
    return `${this.#prefix}.push.${Buffer.from(userId).toString("base64url") || "_"}`;
  }

  /** Every entry stored for the user, in stream order ([] when the stream does not exist yet). */
  async entriesFor(userId: string): Promise<PushRecord[]> {
    return this.#read(this.subjectFor(userId));
  }

  /** Every entry of the stream, in stream order. */
  async allEntries(): Promise<PushRecord[]> {
    return this.#read(`${this.#prefix}.push.>`);
  }

  /** How many entries the stream holds in all (0 when it does not exist yet). */
  async count(): Promise<number> {
    const jsm = await this.#nc.jetstreamManager();
    try {
      return (await jsm.streams.info(this.stream)).state.messages;
    } catch (err) {
      if (isStreamMissing(err)) return 0;
      throw err;
    }
  }

  async #read(filter: string): Promise<PushRecord[]> {
    const jsm = await this.#nc.jetstreamManager();
    try {
      await jsm.streams.info(this.stream);
    } catch (err) {
      if (isStreamMissing(err)) return [];
      throw err;
    }
    // An ephemeral pull consumer over the user's subject, read from the start and deleted after.
    const info = await jsm.consumers.add(this.stream, {
      filter_subject: filter,
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.None,
      inactive_threshold: 30_000_000_000,
    });
    try {
      const consumer = await this.#nc.jetstream().consumers.get(this.stream, info.name);
      const out: PushRecord[] = [];
      let pending = info.num_pending;
      while (pending > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: 2_000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          out.push({ subject: m.subject, msgId: m.headers?.get("Nats-Msg-Id") ?? "", entry: fromBinary(PushEntrySchema, m.data) });
        }
        if (got === 0) throw new Error(`the push stream stopped delivering with ${pending} entries pending on ${filter}`);
        pending -= got;
      }
      return out;
    } finally {
      await jsm.consumers.delete(this.stream, info.name).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    await this.#nc.close();
  }
}

function isStreamMissing(err: unknown): boolean {
  return /stream not found/i.test(String((err as Error)?.message ?? err));
}
