/**
 * Story expiry. Reads already hide a story at its deadline; this deletes it (rows, views,
 * reactions, media bytes) and tells live feeds, on time:
 * - at creation a work item (msgId = story id) goes to the WORK stream; the story-expiry
 *   consumer naks it with a delay until the deadline, then removes the story;
 * - a periodic sweep (and one at start) removes whatever the consumer missed: it was down,
 *   the publish failed, or (embedded mode) the process restarted and lost its timers.
 * Both paths are idempotent, so a repeated delivery or a sweep racing the consumer is harmless.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { Subjects } from "../log/index.ts";
import type { Consumer, ConsumerSpec, Delivered, Outcome, WorkerRuntime } from "../workers/index.ts";
import type { StoryRemover } from "./story-remover.ts";
import { findDoomed, findExpired } from "./story-repository.ts";
import { isUuid } from "../validation.ts";

/** What CreateStory needs: hand the new story to whatever deletes it at its deadline. */
export interface StoryExpiryScheduler {
  schedule(storyId: string): Promise<void>;
}

/** Stories the sweep removes per transaction. */
const SWEEP_BATCH = 500;
/**
 * Longest wait before a not-yet-due story is looked at again. Timers (embedded mode) cannot
 * wait longer than ~24.8 days, and a bounded delay also picks up a changed deadline; a
 * 24-hour story costs four redeliveries.
 */
const MAX_WAIT_MS = 6 * 3600 * 1000;

/**
 * The consumer's handler, pure apart from the repository and remover: for each story id,
 * "done" when the story is gone or was removed now, or a retry at its deadline.
 */
export async function expireDue(db: Kysely<Database>, remover: StoryRemover, storyIds: readonly string[], now: Date): Promise<Outcome[]> {
  const byId = new Map((await findDoomed(db, storyIds)).map((s) => [s.id, s]));
  const due = [...byId.values()].filter((s) => s.expires_at.getTime() <= now.getTime());
  await remover.remove(due, null);
  return storyIds.map((id): Outcome => {
    const story = byId.get(id);
    return story && story.expires_at.getTime() > now.getTime() ? { retryAfterMs: Math.min(story.expires_at.getTime() - now.getTime(), MAX_WAIT_MS) } : "done";
  });
}

/** Removes every story past its deadline, a batch at a time; returns how many. */
export async function sweepExpired(db: Kysely<Database>, remover: StoryRemover, now: Date): Promise<number> {
  let removed = 0;
  for (;;) {
    const batch = await findExpired(db, now, SWEEP_BATCH);
    await remover.remove(batch, null);
    removed += batch.length;
    if (batch.length < SWEEP_BATCH) return removed;
  }
}

export interface StoryExpiryOptions {
  db: Kysely<Database>;
  remover: StoryRemover;
  workers: WorkerRuntime;
  subjects: Subjects;
  logger: Logger;
  sweepIntervalMs: number;
  /** Whether this node runs the consumer (the sweep always runs). */
  runConsumer: boolean;
}

export class StoryExpiry implements StoryExpiryScheduler {
  readonly #o: StoryExpiryOptions;
  readonly #subject: string;
  #consumer: Consumer | null = null;
  #timer: NodeJS.Timeout | null = null;
  #sweeping: Promise<void> | null = null;

  constructor(options: StoryExpiryOptions) {
    this.#o = options;
    this.#subject = options.subjects.work("story", "expire");
  }

  /** A failed publish only delays the deletion to the next sweep; reads hide the story anyway. */
  async schedule(storyId: string): Promise<void> {
    try {
      await this.#o.workers.publishWork(this.#subject, new TextEncoder().encode(storyId), storyId);
    } catch (error) {
      this.#o.logger.warn({ err: error, storyId }, "could not schedule story expiry; the sweep will delete it");
    }
  }

  async start(): Promise<void> {
    if (this.#o.runConsumer) this.#consumer = await this.#o.workers.startConsumer(this.#spec());
    this.#sweepSoon();
    this.#timer = setInterval(() => this.#sweepSoon(), this.#o.sweepIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#consumer?.stop();
    this.#consumer = null;
    await this.#sweeping;
  }

  #spec(): ConsumerSpec<string> {
    const { db, remover } = this.#o;
    return {
      name: "story-expiry",
      filterSubject: this.#subject,
      decode(data) {
        const storyId = new TextDecoder().decode(data);
        if (!isUuid(storyId)) throw new Error(`not a story id: "${storyId.slice(0, 40)}"`);
        return storyId;
      },
      handle: (batch: readonly Delivered<string>[]) => expireDue(db, remover, batch.map((d) => d.value), new Date()),
    };
  }

  #sweepSoon(): void {
    if (this.#sweeping) return;
    this.#sweeping = sweepExpired(this.#o.db, this.#o.remover, new Date())
      .then((removed) => {
        if (removed > 0) this.#o.logger.info({ removed }, "story sweep removed expired stories");
      })
      .catch((error: unknown) => this.#o.logger.warn({ err: error }, "story sweep failed; retrying at the next interval"))
      .finally(() => (this.#sweeping = null));
  }
}
