/**
 * The one rule for message retention, shared by every read path and the sweeper: a message (or
 * an encrypted attachment) of a conversation is past retention when it was created at or before
 * the conversation's deadline,
 *
 *   deadline = greatest(retention_floor, now - least(conversation retention, deployment retention))
 *
 * (nulls ignored; no deadline at all when neither retention nor a floor is set). Reads compare
 * created_at with the deadline of the call's clock, as story reads compare expires_at, so a
 * message is gone from every path the moment it passes, whatever the sweeper has done yet.
 */
import { sql, type RawBuilder } from "kysely";

/** A conversation's retention columns as stored (bigint comes back as a string). */
export interface ConversationRetention {
  message_retention_seconds: string | number | null;
  retention_floor: Date | null;
}

export class RetentionPolicy {
  /** The deployment's retention in seconds (MESSAGE_RETENTION_DAYS); null keeps messages for good. */
  readonly deploymentSeconds: number | null;

  constructor(deploymentSeconds: number | null) {
    this.deploymentSeconds = deploymentSeconds;
  }

  /** The retention that applies to a conversation with this retention of its own: the shorter one. */
  effectiveSeconds(ownSeconds: string | number | null): number | null {
    const own = ownSeconds === null ? null : Number(ownSeconds);
    if (own === null) return this.deploymentSeconds;
    return this.deploymentSeconds === null ? own : Math.min(own, this.deploymentSeconds);
  }

  /** The policy with the clock of one call. */
  at(now: Date): RetentionCutoff {
    return new RetentionCutoff(this, now);
  }
}

/** The retention rule at one instant: what a call (or a sweep) compares created_at with. */
export class RetentionCutoff {
  readonly policy: RetentionPolicy;
  readonly now: Date;

  constructor(policy: RetentionPolicy, now: Date) {
    this.policy = policy;
    this.now = now;
  }

  /** The conversation's deadline (created at or before it: past retention), or null when it keeps everything. */
  deadline(conversation: ConversationRetention): Date | null {
    const seconds = this.policy.effectiveSeconds(conversation.message_retention_seconds);
    const byAge = seconds === null ? null : this.now.getTime() - seconds * 1000;
    const floor = conversation.retention_floor?.getTime() ?? null;
    if (byAge === null && floor === null) return null;
    return new Date(Math.max(byAge ?? -Infinity, floor ?? -Infinity));
  }

  /** Whether something created at `createdAt` in the conversation is still retained. */
  retains(conversation: ConversationRetention, createdAt: Date): boolean {
    const deadline = this.deadline(conversation);
    return deadline === null || createdAt.getTime() > deadline.getTime();
  }

  /**
   * SQL for the deadline of the conversations row aliased `alias` (null when it keeps
   * everything). The alias is a constant of the caller, never input.
   */
  deadlineSql(alias: string): RawBuilder<Date | null> {
    const c = sql.raw(alias);
    return sql<Date | null>`greatest(${c}.retention_floor,
      ${this.now.toISOString()}::timestamptz - least(${c}.message_retention_seconds, ${this.policy.deploymentSeconds}::int8) * interval '1 second')`;
  }

  /**
   * SQL that holds when `createdAt` (a column reference such as "m.created_at") is retained in
   * the conversations row aliased `alias`. Both are constants of the caller, never input.
   */
  retainedSql(createdAt: string, alias: string): RawBuilder<boolean> {
    return sql<boolean>`(${sql.raw(createdAt)} > coalesce(${this.deadlineSql(alias)}, '-infinity'::timestamptz))`;
  }

  /** The deployment's deadline alone (null when it keeps messages for good). */
  deploymentDeadline(): Date | null {
    const seconds = this.policy.deploymentSeconds;
    return seconds === null ? null : new Date(this.now.getTime() - seconds * 1000);
  }
}
