/**
 * Story expiry. Reads already hide a story at its deadline; this deletes it (rows, views,
 * reactions, media bytes) and tells live feeds, on time:
 * - at creation a work item (msgId = story id) goes to the WORK stream; the story-expiry
 *   consumer naks it with a delay until the deadline, then removes the story;
 * - a periodic sweep (and one at start) removes whatever the consumer missed: it was down,
 *   the publish failed, or (embedded mode) the process restarted and lost its timers.
 * Both paths are idempotent, so a repeated delivery or a sweep racing the consumer is harmless.
 *
 * On time to the millisecond rather than to the redelivery timer's granularity (JetStream
 * redelivers a nak'd message tens of milliseconds after its delay, more under load): the
 * consumer asks for the work item HOLD_LEAD_MS before the deadline, then holds the story on a
 * local timer that removes it at the deadline. The work item is nak'd once more for shortly
 * after the deadline, so a node that dies while holding loses nothing: the redelivery (or the
 * sweep) finds the story and removes it, or finds it gone and is done.
 */
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { Subjects } from "../log/index.ts";
import type { Consumer, ConsumerSpec, Delivered, Outcome, WorkerRuntime } from "../workers/index.ts";
import type { StoryRemover } from "./story-remover.ts";
import { findDoomed, findExpired, type DoomedStory } from "./story-repository.ts";
import { deleteZeroTrayViews } from "./story-tray-repository.ts";
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
/** How long before its deadline a story is held on a local timer instead of waiting for a redelivery. */
export const HOLD_LEAD_MS = 1_000;
/** A held story's work item comes back this long after the deadline (for a node that died holding it). */
const HOLD_BACKUP_MS = 2_000;

/** Takes a story due within HOLD_LEAD_MS and removes it at its deadline. */
export type HoldStory = (story: DoomedStory) => void;

/**
 * The consumer's handler, pure apart from the repository, remover and `hold`: for each story
 * id, "done" when the story is gone or was removed now; a story due within HOLD_LEAD_MS goes to
 * `hold` (when given) and comes back HOLD_BACKUP_MS after its deadline; any other comes back
 * HOLD_LEAD_MS before it (or after MAX_WAIT_MS).
 */
export async function expireDue(db: Kysely<Database>, remover: StoryRemover, storyIds: readonly string[], now: Date, hold?: HoldStory): Promise<Outcome[]> {
  const byId = new Map((await findDoomed(db, storyIds)).map((s) => [s.id, s]));
  const due = [...byId.values()].filter((s) => s.expires_at.getTime() <= now.getTime());
  await remover.remove(due, null);
  return storyIds.map((id): Outcome => {
    const story = byId.get(id);
    if (!story) return "done";
    const left = story.expires_at.getTime() - now.getTime();
    if (left <= 0) return "done";
    if (!hold) return { retryAfterMs: Math.min(left, MAX_WAIT_MS) };
    if (left > HOLD_LEAD_MS) return { retryAfterMs: Math.min(left - HOLD_LEAD_MS, MAX_WAIT_MS) };
    hold(story);
    return { retryAfterMs: left + HOLD_BACKUP_MS };
  });
}

/** Removes every story past its deadline, a batch at a time, and the tray's spent view counts; returns how many stories. */
export async function sweepExpired(db: Kysely<Database>, remover: StoryRemover, now: Date): Promise<number> {
  let removed = 0;
  for (;;) {
    const batch = await findExpired(db, now, SWEEP_BATCH);
    await remover.remove(batch, null);
    removed += batch.length;
    if (batch.length < SWEEP_BATCH) break;
  }
  await deleteZeroTrayViews(db);
  return removed;
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
  /** Stories held until their deadline, by id, with their timers. */
  readonly #held = new Map<string, NodeJS.Timeout>();
  /** Removals started by held timers, awaited by stop(). */
  readonly #removing = new Set<Promise<void>>();

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
    for (const timer of this.#held.values()) clearTimeout(timer);
    this.#held.clear();
    await Promise.all([this.#sweeping, ...this.#removing]);
  }

  /**
   * Removes the story at its deadline (a held story whose timer has not fired when the node
   * stops is left to its work item's redelivery). A timer that fires a little early (timers
   * and the wall clock drift apart by a millisecond or so) waits again.
   */
  #hold(story: DoomedStory): void {
    if (this.#held.has(story.id)) return;
    const deadline = story.expires_at.getTime();
    const arm = () => {
      this.#held.set(story.id, setTimeout(fire, Math.max(0, deadline - Date.now())));
    };
    const fire = () => {
      if (Date.now() < deadline) return arm();
      this.#held.delete(story.id);
      // The held row is what expireDue read; the remover skips it if something deleted it since.
      const removal = this.#o.remover
        .remove([story], null)
        .catch((error: unknown) => this.#o.logger.warn({ err: error, storyId: story.id }, "could not remove a held story at its deadline; its work item comes back"))
        .finally(() => this.#removing.delete(removal));
      this.#removing.add(removal);
    };
    arm();
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
      handle: (batch: readonly Delivered<string>[]) => expireDue(db, remover, batch.map((d) => d.value), new Date(), (story) => this.#hold(story)),
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
