/**
 * Makes sure a user row exists for every authenticated caller. Each node remembers the ids
 * it has already ensured, so the insert runs once per user per node instead of on every
 * call. A user row goes only when its account is erased: the node's erasure gate tells the
 * directory to forget the id, and while the erasure runs the id is not remembered, so the
 * first call after it creates a new, empty row.
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { insertUserIfMissing } from "./user-repository.ts";

/** How many ids a node remembers before it starts over (bounds memory). */
const MAX_REMEMBERED = 100_000;

export class UserDirectory {
  readonly #db: Kysely<Database>;
  readonly #isErasing: (userId: string) => boolean;
  #known = new Set<string>();

  constructor(db: Kysely<Database>, isErasing: (userId: string) => boolean = () => false) {
    this.#db = db;
    this.#isErasing = isErasing;
  }

  async ensure(userId: string): Promise<void> {
    if (this.#known.has(userId)) return;
    await insertUserIfMissing(this.#db, userId);
    if (this.#isErasing(userId)) return;
    if (this.#known.size >= MAX_REMEMBERED) this.#known = new Set();
    this.#known.add(userId);
  }

  /** Forgets the id (its account is being erased), so the next call makes sure of its row again. */
  forget(userId: string): void {
    this.#known.delete(userId);
  }
}
