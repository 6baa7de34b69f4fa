/**
 * Each node's copy of the suspensions and bans in force, so checking a caller costs a map
 * lookup instead of a query on every call. It is loaded at start and kept current by the
 * account_moderated events, which reach every node through the feed hub in log order with
 * no gap (a lost publish is read back from PostgreSQL), and by the writer's own node at once.
 * A suspension ends by the clock, with no event needed.
 */
import type { Kysely } from "kysely";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { AccountModerated } from "../../gen/parley/v1/event_pb.ts";
import { ModerationAction } from "../../gen/parley/v1/moderation_pb.ts";
import type { Database } from "../db/schema.ts";
import type { StoredEvent } from "../log/event-log.ts";
import { listRestrictionsInForce, RestrictionKindCode } from "./restriction-repository.ts";
import { AccountRestrictedError } from "./restriction-interceptor.ts";

/** A restriction as the cache keeps it. */
export interface Restriction {
  readonly kind: "suspended" | "banned";
  /** When a suspension ends; null for a ban. */
  readonly until: Date | null;
  readonly reason: string;
}

/** Restrictions loaded per query at start. */
const LOAD_PAGE = 1000;

export class RestrictionCache {
  readonly #byUser = new Map<string, Restriction>();

  /** Loads every restriction in force (call after the feed hub has started, so no change falls between). */
  async load(db: Kysely<Database>): Promise<void> {
    const now = new Date();
    for (let after: string | null = null; ; ) {
      const rows = await listRestrictionsInForce(db, now, after, LOAD_PAGE);
      for (const row of rows) {
        this.#byUser.set(row.user_id, { kind: row.kind === RestrictionKindCode.BANNED ? "banned" : "suspended", until: row.until, reason: row.reason });
      }
      if (rows.length < LOAD_PAGE) return;
      after = rows.at(-1)!.user_id;
    }
  }

  /** The user's restriction in force at `now`, if any. */
  inForce(userId: string, now = new Date()): Restriction | undefined {
    const restriction = this.#byUser.get(userId);
    if (!restriction) return undefined;
    if (restriction.until !== null && restriction.until <= now) {
      this.#byUser.delete(userId);
      return undefined;
    }
    return restriction;
  }

  /** Throws AccountRestrictedError while the user is suspended or banned (for Subscribe). */
  readonly requireUnrestricted = (userId: string): void => {
    const restriction = this.inForce(userId);
    if (restriction) throw new AccountRestrictedError(userId, restriction);
  };

  /** Applies a committed moderation decision about the user. */
  apply(userId: string, decision: AccountModerated): void {
    switch (decision.action) {
      case ModerationAction.SUSPEND:
        this.#byUser.set(userId, { kind: "suspended", until: decision.until ? timestampDate(decision.until) : null, reason: decision.reason });
        return;
      case ModerationAction.BAN:
        this.#byUser.set(userId, { kind: "banned", until: null, reason: decision.reason });
        return;
      case ModerationAction.LIFT:
        this.#byUser.delete(userId);
        return;
    }
  }

  /** For the feed hub: every event no conversation carries (a user's own events) passes here. */
  readonly observe = (stored: StoredEvent): void => {
    if (stored.conversationId !== null || stored.targetUserId === null) return;
    const { kind } = stored.event;
    if (kind.case === "accountModerated") this.apply(stored.targetUserId, kind.value);
  };
}
