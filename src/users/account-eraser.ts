/**
 * Account erasure (UserService.DeleteAccount). A big account may have sent 100k messages, so
 * the erasure is a sequence of small transactions rather than one giant one, recorded in
 * account_erasures so that it survives the node:
 *   1. the row is written and the node waits until every node's write gate refuses the user's
 *      writes (erasure-gate.ts), so nothing new appears behind the erasure's back;
 *   2. the user leaves every conversation (as a member who leaves: groups keep an admin, the
 *      other member of a DIRECT conversation keeps the thread);
 *   3. their messages become tombstones, a batch per transaction (content, edit history,
 *      mentions, reactions and blind tokens erased; the events that carried the text
 *      rewritten; a message_deleted event per message to the members' streams), and the
 *      search index forgets each batch;
 *   4. their reactions to messages, stories (with views, reactions and media), views and
 *      reactions on others' stories, media, follows, close friends and blocks both ways,
 *      devices with their prekeys and inboxes, notifications, notification settings, email
 *      digest settings (with the address) and push outbox entries go; the log stops routing events to them;
 *   5. the user row goes last (every table that references it is empty by then, or the delete
 *      fails and the erasure is retried), and the erasure is marked finished.
 * Every step is idempotent and finds its own remaining work (the next batch), so a run that
 * stops anywhere is finished by re-running it: after a failure (released at once), or by
 * another node's sweep once the run's heartbeat is older than the lease (its node died), or at
 * the next start.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import type { ConversationService } from "../conversations/index.ts";
import type { Database } from "../db/schema.ts";
import { deleteDevicesOf } from "../keys/device-repository.ts";
import { rewriteUserEvents, unrouteUserEvents, writeWithEvents, type EventPublisher } from "../log/index.ts";
import { deleteMedia, type BlobStore } from "../media/index.ts";
import { findMediaIdsOwnedBy } from "../media/media-repository.ts";
import { MessageLifecycle } from "../messages/message-lifecycle.ts";
import { deleteDigestSettingsOf } from "../email/digest-settings-repository.ts";
import { deleteSettingsOf, deleteSomeNotificationsOf } from "../notifications/notification-repository.ts";
import type { PushOutbox } from "../notifications/index.ts";
import { removeSomeReactionsOf } from "../reactions/reaction-removal.ts";
import type { SearchIndex } from "../search/index.ts";
import { BLOCKS, CLOSE_FRIENDS, FOLLOWS, removeSomeEdgesOf } from "../social/social-repository.ts";
import type { StoryRemover } from "../stories/index.ts";
import { storyReacted } from "../stories/story-events.ts";
import { deleteReactionsBy, deleteViewsBy, findStoriesOf } from "../stories/story-repository.ts";
import { SETTLE_MS, type ErasureGate } from "./erasure-gate.ts";
import * as repo from "./erasure-repository.ts";
import { deleteUser } from "./user-repository.ts";

/** Messages per transaction: each batch locks its conversations for a few milliseconds. */
const MESSAGE_BATCH = 500;
/** Rows per statement for everything else. */
const ROW_BATCH = 2_000;
/** Stories (with their media files) per transaction. */
const STORY_BATCH = 100;
/** A run whose heartbeat is older than this is taken to be dead; a batch takes milliseconds. */
export const ERASURE_LEASE_MS = 30_000;
/** How often a DeleteAccount call waiting for another node's run looks at it. */
const WAIT_POLL_MS = 250;

/** Test-only fault injection: hold a run after some progress, or stop it there by throwing. */
export interface ErasureFaults {
  /** Awaited after every recorded step of a run, with how many messages the run erased so far. */
  afterProgress?: (userId: string, messagesErasedByRun: number) => void | Promise<void>;
}

export interface AccountEraserOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  gate: ErasureGate;
  conversations: ConversationService;
  search: SearchIndex;
  stories: StoryRemover;
  blobs: BlobStore;
  push: PushOutbox;
  logger: Logger;
  /** How often this node looks for erasures that a stopped run left unfinished; null: never (no consumers here). */
  sweepIntervalMs: number | null;
  faults?: ErasureFaults;
}

/** The run stopped on purpose (another run took over, or this node is stopping). */
class RunStopped extends Error {}

export class AccountEraser {
  readonly #o: AccountEraserOptions;
  readonly #lifecycle: MessageLifecycle;
  /** Runs on this node, by user id. */
  readonly #running = new Map<string, Promise<bigint>>();
  #timer: NodeJS.Timeout | null = null;
  #sweeping: Promise<void> | null = null;
  #stopping = false;

  constructor(options: AccountEraserOptions) {
    this.#o = options;
    this.#lifecycle = new MessageLifecycle(options.db, options.publisher);
  }

  /** Resumes what a stopped node left unfinished, now and then every sweep interval. */
  start(): void {
    if (this.#o.sweepIntervalMs === null) return;
    this.#sweepSoon();
    this.#timer = setInterval(() => this.#sweepSoon(), this.#o.sweepIntervalMs);
    this.#timer.unref();
  }

  /** Stops the runs at their next step (they are released for another node) and the sweep. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#sweeping;
    await Promise.allSettled([...this.#running.values()]);
  }

  /**
   * Erases the account and returns how many messages became tombstones. Idempotent: a call
   * while an erasure of the id is under way joins it (here) or waits for it (another node),
   * or takes it over when its run stopped; a call after it finished erases the new account
   * the id has since (an empty one, unless it was used again).
   */
  async erase(userId: string, signal: AbortSignal): Promise<bigint> {
    const runner = newRunner();
    if (await repo.startErasure(this.#o.db, userId, runner)) {
      this.#o.gate.begin(userId);
      return this.#run(userId, runner, { settle: true });
    }
    for (;;) {
      const local = this.#running.get(userId);
      if (local) return local;
      if (await repo.claimErasure(this.#o.db, userId, runner, ERASURE_LEASE_MS)) {
        this.#o.gate.begin(userId);
        return this.#run(userId, runner, { settle: false });
      }
      const row = await repo.findErasure(this.#o.db, userId);
      if (!row || row.finished_at !== null) return BigInt(row?.messages_erased ?? 0);
      await delay(WAIT_POLL_MS, undefined, { signal });
    }
  }

  /** Runs the erasure to its end; the caller recorded itself as its runner. Detached from any call. */
  #run(userId: string, runner: string, { settle }: { settle: boolean }): Promise<bigint> {
    const run = (async () => {
      try {
        if (settle) await delay(SETTLE_MS);
        const erased = await this.#erase(userId, runner);
        this.#o.gate.end(userId, true);
        this.#o.logger.info({ userId, messagesErased: String(erased) }, "account erased");
        return erased;
      } catch (error) {
        this.#o.gate.end(userId, false);
        await repo.releaseErasure(this.#o.db, userId, runner).catch(() => undefined);
        throw error;
      } finally {
        this.#running.delete(userId);
      }
    })();
    this.#running.set(userId, run);
    return run;
  }

  async #erase(userId: string, runner: string): Promise<bigint> {
    const { db, publisher } = this.#o;
    let erasedByRun = 0;
    const progress = async (messages = 0) => {
      erasedByRun += messages;
      if (this.#stopping || !(await repo.recordProgress(db, userId, runner, messages))) throw new RunStopped("the erasure run was stopped");
      await this.#o.faults?.afterProgress?.(userId, erasedByRun);
    };
    /** Repeats a batch step until it finds nothing left. */
    const drain = async (step: () => Promise<number>, messages = false) => {
      for (let n = await step(); n > 0; n = await step()) await progress(messages ? n : 0);
    };

    // First, while the audience is still known: a resumed run after this step finds a smaller one, but this step was done.
    await this.#scrubAudienceEvents(userId, progress);
    await this.#o.conversations.leaveAll(userId);
    await progress();
    await drain(async () => {
      const tombstones = await this.#lifecycle.deleteAllOf(userId, MESSAGE_BATCH);
      await this.#unindex(tombstones);
      return tombstones.length;
    }, true);
    await drain(() => removeSomeReactionsOf(db, publisher, userId, ROW_BATCH));
    await drain(async () => {
      const stories = await findStoriesOf(db, userId, STORY_BATCH);
      await this.#o.stories.remove(stories, userId);
      return stories.length;
    });
    await writeWithEvents(db, publisher, async (tx, recorded) => {
      await deleteViewsBy(tx, userId);
      for (const r of await deleteReactionsBy(tx, userId)) recorded.push(storyReacted(r.story_id, r.author_id, userId, r.emoji, false, BigInt(r.count)));
    });
    await drain(async () => {
      const ids = await findMediaIdsOwnedBy(db, userId, ROW_BATCH);
      // Bytes first, as the story remover does: if deleting the rows then fails, the next run finds
      // them again, whereas rows first could leave files nothing points at.
      await Promise.all(ids.map((id) => this.#o.blobs.delete(id)));
      await deleteMedia(db, ids);
      return ids.length;
    });
    for (const kind of [FOLLOWS, CLOSE_FRIENDS, BLOCKS]) await drain(() => removeSomeEdgesOf(db, kind, userId, ROW_BATCH));
    await db.transaction().execute((tx) => deleteDevicesOf(tx, userId));
    await drain(() => deleteSomeNotificationsOf(db, userId, ROW_BATCH));
    await deleteSettingsOf(db, userId);
    await deleteDigestSettingsOf(db, userId);
    await this.#o.push.forget(userId);
    await drain(() => unrouteUserEvents(db, userId, ROW_BATCH));
    await progress();
    await deleteUser(db, userId);
    const total = await repo.finishErasure(db, userId, runner);
    if (total === null) throw new RunStopped("another run took the erasure over");
    return total;
  }

  /**
   * Erases the user's content from events addressed to others alone: the captions of their
   * stories in story_posted events, and the to-device messages they sent (ciphertext), within
   * the replay window. Such events only ever go to the user's followers, close friends and
   * conversation partners, so only theirs are read (an index range each, filtered by the
   * bytes of the user's id before anything is decoded).
   */
  async #scrubAudienceEvents(userId: string, progress: () => Promise<void>): Promise<void> {
    const scrub = (event: Event): Event | null => {
      const { kind } = event;
      if (kind.case === "storyPosted" && kind.value.story?.authorId === userId) {
        kind.value.story.caption = "";
        return event;
      }
      if (kind.case === "toDeviceMessage" && kind.value.message?.senderUserId === userId) return create(EventSchema, { id: event.id, createdAt: event.createdAt });
      return null;
    };
    for (let after = ""; ; ) {
      const page = await repo.findAudiencePage(this.#o.db, userId, after, ROW_BATCH);
      if (page.length === 0) return;
      await rewriteUserEvents(this.#o.db, page, userId, scrub);
      await progress();
      after = page.at(-1)!;
    }
  }

  /**
   * Tells the search index at once. The message_deleted events tell it too (the indexer), and
   * search never shows a tombstone whatever the index says, so a failure here is only logged.
   */
  async #unindex(tombstones: readonly { conversation_id: string; seq: string; id: string }[]): Promise<void> {
    if (tombstones.length === 0) return;
    try {
      await this.#o.search.apply({ upserts: [], removals: tombstones.map((t) => ({ conversationId: t.conversation_id, seq: BigInt(t.seq), messageId: t.id })) });
    } catch (error) {
      this.#o.logger.warn({ err: error, messages: tombstones.length }, "search index removal failed; the indexer removes them from the events");
    }
  }

  #sweepSoon(): void {
    if (this.#sweeping || this.#stopping) return;
    this.#sweeping = (async () => {
      for (const userId of await repo.findAbandoned(this.#o.db, ERASURE_LEASE_MS, 10)) {
        if (this.#stopping) return;
        if (this.#running.has(userId)) continue;
        const runner = newRunner();
        if (!(await repo.claimErasure(this.#o.db, userId, runner, ERASURE_LEASE_MS))) continue;
        this.#o.gate.begin(userId);
        this.#o.logger.info({ userId }, "resuming an unfinished account erasure");
        await this.#run(userId, runner, { settle: false });
      }
    })()
      .catch((error: unknown) => {
        if (!(error instanceof RunStopped)) this.#o.logger.warn({ err: error }, "account erasure sweep failed; retrying at the next interval");
      })
      .finally(() => (this.#sweeping = null));
  }
}

function newRunner(): string {
  return randomBytes(12).toString("hex");
}
