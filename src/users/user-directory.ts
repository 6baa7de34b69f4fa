/**
 * Makes sure a user row exists for every authenticated caller. Each node remembers the ids
 * it has already ensured, so the insert runs once per user per node instead of on every
 * call: users are never deleted, so a remembered id stays true.
 */
import type { Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { insertUserIfMissing } from "./user-repository.ts";

/** How many ids a node remembers before it starts over (bounds memory). */
const MAX_REMEMBERED = 100_000;

export class UserDirectory {
  readonly #db: Kysely<Database>;
  #known = new Set<string>();

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async ensure(userId: string): Promise<void> {
    if (this.#known.has(userId)) return;
    await insertUserIfMissing(this.#db, userId);
    if (this.#known.size >= MAX_REMEMBERED) this.#known = new Set();
    this.#known.add(userId);
  }
}
