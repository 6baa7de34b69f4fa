/**
 * Keeps a user whose account is being erased from writing, on every node. Each node polls the
 * erasures under way (one indexed query, every POLL_MS) into a set, so the check on a write is
 * a set lookup; a node that starts an erasure knows at once, and waits SETTLE_MS (longer than
 * two polls) before erasing anything, by which time every running node refuses the user's
 * writes. The node's user directory forgets every id it sees here, so once the erasure is over
 * the next call of that id creates a new, empty user row.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Logger } from "pino";
import { UserService as UserServiceDesc } from "../../gen/parley/v1/user_service_pb.ts";
import { callerKey } from "../auth/user-context.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError } from "../errors.ts";
import { isReadOnly } from "../server/rpc-kind.ts";
import { findErasuresInFlight } from "./erasure-repository.ts";

/** How often each node reads the erasures under way. */
const POLL_MS = 500;
/** How long a new erasure waits before it erases anything: every node has polled by then. */
export const SETTLE_MS = 2 * POLL_MS + 250;
/** How far back a poll looks for finished erasures (covers a slow or skipped poll). */
const LOOKBACK_MS = 60_000;

export interface ErasureGateOptions {
  db: Kysely<Database>;
  logger: Logger;
  /** Called with every id whose erasure is under way or just finished (the user directory forgets it). */
  onSeen: (userId: string) => void;
}

export class ErasureGate {
  readonly #options: ErasureGateOptions;
  /** Erased elsewhere, as of the last poll. */
  #polled = new Set<string>();
  /** Being erased by this node. */
  readonly #running = new Set<string>();
  /** When this node finished erasing an id: a poll that started earlier must not bring it back. */
  readonly #finishedHere = new Map<string, number>();
  #timer: NodeJS.Timeout | null = null;
  #polling: Promise<void> | null = null;

  constructor(options: ErasureGateOptions) {
    this.#options = options;
  }

  async start(): Promise<void> {
    await this.#poll();
    this.#timer = setInterval(() => void this.#poll(), POLL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#polling;
  }

  isErasing(userId: string): boolean {
    return this.#running.has(userId) || this.#polled.has(userId);
  }

  /** This node erases the user from now on. */
  begin(userId: string): void {
    this.#running.add(userId);
    this.#options.onSeen(userId);
  }

  /** This node stopped erasing the user: finished (their writes are welcome again, as a new account) or handed over. */
  end(userId: string, finished: boolean): void {
    this.#running.delete(userId);
    if (!finished) return;
    this.#polled.delete(userId);
    this.#finishedHere.set(userId, Date.now());
    this.#options.onSeen(userId);
  }

  #poll(): Promise<void> {
    this.#polling ??= (async () => {
      const started = Date.now();
      try {
        const rows = await findErasuresInFlight(this.#options.db, LOOKBACK_MS);
        const polled = new Set<string>();
        for (const row of rows) {
          this.#options.onSeen(row.user_id);
          const finishedHere = this.#finishedHere.get(row.user_id);
          if (!row.finished && !(finishedHere !== undefined && finishedHere >= started)) polled.add(row.user_id);
        }
        this.#polled = polled;
        for (const [userId, at] of this.#finishedHere) if (at < started - LOOKBACK_MS) this.#finishedHere.delete(userId);
      } catch (error) {
        this.#options.logger.warn({ err: error }, "could not read the account erasures under way; keeping the last known set");
      }
    })().finally(() => {
      this.#polling = null;
    });
    return this.#polling;
  }
}

/**
 * Refuses every write of a user whose account is being erased (FAILED_PRECONDITION), except
 * DeleteAccount itself, which joins or resumes the erasure. Reads go through: they find
 * nothing of what is already erased.
 */
export function createErasureGuard(gate: ErasureGate): Interceptor {
  return (next) => async (req) => {
    const caller = req.contextValues.get(callerKey);
    if (caller && gate.isErasing(caller.userId) && !isReadOnly(req.method) && req.method !== UserServiceDesc.method.deleteAccount) {
      throw new FailedPreconditionError("this account is being deleted", "ACCOUNT_BEING_DELETED");
    }
    return next(req);
  };
}
