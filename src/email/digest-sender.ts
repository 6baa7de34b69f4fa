/**
 * The digest sender: on nodes that run the consumers, when SMTP_URL is set, every
 * EMAIL_DIGEST_SWEEP_SECONDS it claims users who are due a digest (see claimDueUsers), reads
 * what each missed, emails it, and records the window as covered.
 *
 * Delivery is at-least-once: the coverage is recorded after the SMTP server accepted the mail,
 * so a node that dies in between (or loses the database at that moment) leaves the lease to
 * expire and another sweep sends that digest again. The other order (record, then send) would
 * lose a digest on every such crash, and a lost digest is a missed message nobody notices,
 * while a duplicate is a visible nuisance in a window of milliseconds. A user is only ever
 * held by one claim at a time, so two nodes never send the same digest concurrently.
 */
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import type { Database } from "../db/schema.ts";
import type { RetentionPolicy } from "../retention/retention-policy.ts";
import { composeDigest } from "./digest-mail.ts";
import { claimDueUsers, findMissed, recordDigest, releaseClaims, type ClaimedUser } from "./digest-repository.ts";
import { SMTP_TIMEOUT_MS, type Mailer } from "./mailer.ts";

/** Users claimed per statement. */
const CLAIM_BATCH = 20;
/** At most this many claims per round; the next round goes on. */
const MAX_CLAIMS_PER_ROUND = 50;
/**
 * How long a claim holds its users. A send takes at most a few SMTP timeouts; a user is not
 * started with less than SEND_RESERVE_MS of the lease left, so the lease cannot run out mid-send.
 */
const LEASE_MS = 10 * 60_000;
const SEND_RESERVE_MS = 4 * SMTP_TIMEOUT_MS;
/** Most items listed in one digest; more are summed up as "and more". */
const MAX_ITEMS = 200;

export interface DigestSenderOptions {
  db: Kysely<Database>;
  mailer: Mailer;
  retention: RetentionPolicy;
  logger: Logger;
  sweepIntervalMs: number;
  graceMs: number;
  hourlyPeriodMs: number;
  dailyPeriodMs: number;
}

/** What one round did. */
export interface DigestRound {
  sent: number;
  /** Users whose window held nothing to email after all (muted, blocked, read meanwhile). */
  empty: number;
  failed: number;
}

export class DigestSender {
  readonly #o: DigestSenderOptions;
  #timer: NodeJS.Timeout | null = null;
  #round: Promise<void> | null = null;
  #stopping = false;

  constructor(options: DigestSenderOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer = setInterval(() => this.#roundSoon(), this.#o.sweepIntervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#round;
    this.#o.mailer.close();
  }

  /** One round: claims and emails due users until none are left (or the round's bound). */
  async sweep(): Promise<DigestRound> {
    const round: DigestRound = { sent: 0, empty: 0, failed: 0 };
    for (let claims = 0; claims < MAX_CLAIMS_PER_ROUND && !this.#stopping; claims++) {
      const token = randomBytes(12).toString("base64url");
      const claimedAt = Date.now();
      const users = await claimDueUsers(this.#o.db, {
        token,
        leaseMs: LEASE_MS,
        graceMs: this.#o.graceMs,
        hourlyPeriodMs: this.#o.hourlyPeriodMs,
        dailyPeriodMs: this.#o.dailyPeriodMs,
        limit: CLAIM_BATCH,
      });
      let next = 0;
      for (; next < users.length && !this.#stopping && Date.now() - claimedAt < LEASE_MS - SEND_RESERVE_MS; next++) {
        await this.#digest(users[next]!, token, round);
      }
      await releaseClaims(this.#o.db, users.slice(next).map((u) => u.user_id), token);
      if (users.length < CLAIM_BATCH) break;
    }
    return round;
  }

  async #digest(user: ClaimedUser, token: string, round: DigestRound): Promise<void> {
    const { db, mailer, retention, logger } = this.#o;
    try {
      const items = await findMissed(db, user, retention.at(new Date()), MAX_ITEMS + 1);
      if (items.length === 0) {
        await recordDigest(db, user, token, false);
        round.empty++;
        return;
      }
      const mail = composeDigest(items.slice(0, MAX_ITEMS), items.length > MAX_ITEMS);
      await mailer.send({ to: user.email_address, ...mail, headers: { "Auto-Submitted": "auto-generated" } });
      if (!(await recordDigest(db, user, token, true))) logger.warn({ userId: user.user_id }, "email digest sent after its lease was taken over; it may be sent twice");
      round.sent++;
    } catch (error) {
      // The lease stays: the user is retried once it expires, not hammered every sweep.
      logger.warn({ err: error, userId: user.user_id }, "email digest failed; retrying when its lease expires");
      round.failed++;
    }
  }

  #roundSoon(): void {
    if (this.#round) return;
    this.#round = this.sweep()
      .then((r) => {
        if (r.sent > 0 || r.failed > 0) this.#o.logger.info(r, "email digest round");
      })
      .catch((error: unknown) => this.#o.logger.warn({ err: error }, "email digest round failed; retrying at the next interval"))
      .finally(() => (this.#round = null));
  }
}
