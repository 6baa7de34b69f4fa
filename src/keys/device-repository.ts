/** Every SQL statement about devices and their one-time prekeys. */
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import type { Database, DevicesTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type DeviceRow = Selectable<DevicesTable>;

export interface NewDevice {
  id: string;
  userId: string;
  signingPublicKey: Uint8Array;
  boxPublicKey: Uint8Array;
  boxKeySignature: Uint8Array;
  displayName: string;
}

export interface NewPrekey {
  keyId: number;
  publicKey: Uint8Array;
  signature: Uint8Array;
}

/** The device that holds this signing key, revoked or not. */
export async function findDeviceBySigningKey(db: Db, signingPublicKey: Uint8Array): Promise<DeviceRow | undefined> {
  return db.selectFrom("devices").selectAll().where("signing_public_key", "=", signingPublicKey).executeTakeFirst();
}

export async function findDevice(db: Db, deviceId: string): Promise<DeviceRow | undefined> {
  return db.selectFrom("devices").selectAll().where("id", "=", deviceId).executeTakeFirst();
}

/**
 * Serializes registrations that could collide: those of one signing key (so a concurrent
 * second registration finds the first instead of failing on the unique index) and those of
 * one user (so the per-user device limit holds). Transaction-scoped advisory locks, always
 * taken key first, then user, so two registrations never wait for each other in a cycle.
 */
export async function lockRegistration(tx: Transaction<Database>, signingPublicKey: Uint8Array, userId: string): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`device-key:${Buffer.from(signingPublicKey).toString("hex")}`}, 0))`.execute(tx);
  await sql`select pg_advisory_xact_lock(hashtextextended(${`device-user:${userId}`}, 0))`.execute(tx);
}

/** How many devices the user has that are not revoked. */
export async function countActiveDevices(db: Db, userId: string): Promise<number> {
  const row = await db
    .selectFrom("devices")
    .select((eb) => eb.fn.countAll<string>().as("n"))
    .where("user_id", "=", userId)
    .where("revoked_at", "is", null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function insertDevice(tx: Db, device: NewDevice): Promise<DeviceRow> {
  return tx
    .insertInto("devices")
    .values({
      id: device.id,
      user_id: device.userId,
      signing_public_key: device.signingPublicKey,
      box_public_key: device.boxPublicKey,
      box_key_signature: device.boxKeySignature,
      display_name: device.displayName,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Marks the device revoked; false when it already was. */
export async function revokeDevice(tx: Db, deviceId: string): Promise<boolean> {
  const result = await tx.updateTable("devices").set({ revoked_at: sql`now()` }).where("id", "=", deviceId).where("revoked_at", "is", null).executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** The devices of these users, oldest first: the active ones, or all with `includeRevoked`. */
export async function listDevices(db: Db, userIds: readonly string[], { includeRevoked = false } = {}): Promise<DeviceRow[]> {
  if (userIds.length === 0) return [];
  let query = db.selectFrom("devices").selectAll().where("user_id", "in", [...userIds]);
  if (!includeRevoked) query = query.where("revoked_at", "is", null);
  return query.orderBy("created_at").orderBy("id").execute();
}

/** Unclaimed prekeys per device, for the devices asked. */
export async function countUnclaimedPrekeys(db: Db, deviceIds: readonly string[]): Promise<Map<string, number>> {
  if (deviceIds.length === 0) return new Map();
  const rows = await db
    .selectFrom("device_prekeys")
    .select(["device_id", (eb) => eb.fn.countAll<string>().as("n")])
    .where("device_id", "in", [...deviceIds])
    .where("claimed_at", "is", null)
    .groupBy("device_id")
    .execute();
  return new Map(rows.map((r) => [r.device_id, Number(r.n)]));
}

/**
 * Stores the prekeys, or none of them: false when one's key id or key was ever uploaded for
 * the device (claimed ones included), so a key is never handed out twice.
 */
export async function insertPrekeys(tx: Transaction<Database>, deviceId: string, prekeys: readonly NewPrekey[]): Promise<boolean> {
  if (prekeys.length === 0) return true;
  const rows = await tx
    .insertInto("device_prekeys")
    .values(prekeys.map((p) => ({ device_id: deviceId, key_id: p.keyId, public_key: p.publicKey, signature: p.signature })))
    .onConflict((oc) => oc.doNothing())
    .returning("key_id")
    .execute();
  return rows.length === prekeys.length;
}

export interface ClaimedPrekeyRow {
  device_id: string;
  key_id: string;
  public_key: Uint8Array;
  signature: Uint8Array;
}

/**
 * Claims the lowest unclaimed prekey of each active device. Concurrent claimers skip the rows
 * another has locked, so each prekey goes to exactly one of them.
 */
export async function claimPrekeys(tx: Db, deviceIds: readonly string[]): Promise<ClaimedPrekeyRow[]> {
  if (deviceIds.length === 0) return [];
  const result = await sql<ClaimedPrekeyRow>`
    with chosen as (
      select k.device_id, k.key_id
      from unnest(${[...deviceIds]}::uuid[]) as asked(id)
      join devices d on d.id = asked.id and d.revoked_at is null
      cross join lateral (
        select p.device_id, p.key_id from device_prekeys p
        where p.device_id = asked.id and p.claimed_at is null
        order by p.key_id limit 1
        for update skip locked
      ) k
    )
    update device_prekeys p set claimed_at = now()
    from chosen
    where p.device_id = chosen.device_id and p.key_id = chosen.key_id
    returning p.device_id, p.key_id, p.public_key, p.signature`.execute(tx);
  return result.rows;
}

/** Of these users, those who share a conversation with the user (the user counts too). */
export async function findUsersSharingAConversation(db: Db, userId: string, others: readonly string[]): Promise<Set<string>> {
  if (others.length === 0) return new Set();
  const rows = await db
    .selectFrom("conversation_members as mine")
    .innerJoin("conversation_members as theirs", "theirs.conversation_id", "mine.conversation_id")
    .select("theirs.user_id")
    .distinct()
    .where("mine.user_id", "=", userId)
    .where("theirs.user_id", "in", [...others])
    .execute();
  return new Set([userId, ...rows.map((r) => r.user_id)]);
}

/**
 * The active devices among these ids. With `lock`, their rows are locked shared until the
 * transaction ends, so a revocation (an update of the row) waits for it, or is seen by it.
 */
export async function listActiveDevicesById(db: Db, deviceIds: readonly string[], lock = false): Promise<DeviceRow[]> {
  if (deviceIds.length === 0) return [];
  const query = db.selectFrom("devices").selectAll().where("id", "in", [...deviceIds]).where("revoked_at", "is", null).orderBy("id");
  return (lock ? query.forShare() : query).execute();
}

/**
 * Deletes the user's devices with their prekeys and inboxes, and the to-device messages they
 * sent that are still waiting (account erasure). Signing keys are forgotten with the devices.
 */
export async function deleteDevicesOf(tx: Transaction<Database>, userId: string): Promise<void> {
  const mine = sql`(select id from devices where user_id = ${userId})`;
  await sql`delete from device_prekeys where device_id in ${mine}`.execute(tx);
  await sql`delete from to_device_messages where recipient_device_id in ${mine} or sender_user_id = ${userId}`.execute(tx);
  await sql`delete from devices where user_id = ${userId}`.execute(tx);
}
