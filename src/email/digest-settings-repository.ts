/** Every SQL statement about a user's email digest settings (the sender's own are in digest-repository.ts). */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, EmailDigestSettingsTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export const Frequency = { OFF: 1, HOURLY: 2, DAILY: 3 } as const;

export type DigestSettingsRow = Pick<Selectable<EmailDigestSettingsTable>, "email_address" | "frequency" | "last_sent_at">;

export async function findDigestSettings(db: Db, userId: string): Promise<DigestSettingsRow | undefined> {
  return db.selectFrom("email_digest_settings").select(["email_address", "frequency", "last_sent_at"]).where("user_id", "=", userId).executeTakeFirst();
}

/**
 * Saves the settings. Turning digests on (from OFF, or the first time) starts coverage now, so
 * the first digest holds only what is missed from then on, never the user's whole unread past;
 * changing the address or the frequency while on keeps it.
 */
export async function saveDigestSettings(db: Db, userId: string, emailAddress: string, frequency: number): Promise<DigestSettingsRow> {
  const result = await sql<DigestSettingsRow>`
    insert into email_digest_settings as s (user_id, email_address, frequency, covered_until, updated_at)
    values (${userId}, ${emailAddress}, ${frequency}, date_trunc('milliseconds', now()), now())
    on conflict (user_id) do update set
      email_address = excluded.email_address,
      frequency = excluded.frequency,
      covered_until = case when s.frequency = ${Frequency.OFF} then date_trunc('milliseconds', now()) else s.covered_until end,
      updated_at = now()
    returning email_address, frequency, last_sent_at`.execute(db);
  return result.rows[0]!;
}

/** Deletes the user's settings (account erasure). */
export async function deleteDigestSettingsOf(db: Db, userId: string): Promise<void> {
  await db.deleteFrom("email_digest_settings").where("user_id", "=", userId).execute();
}
