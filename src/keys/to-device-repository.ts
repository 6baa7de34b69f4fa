/** Every SQL statement about devices' inboxes of to-device messages. */
import type { Kysely, Selectable, Transaction } from "kysely";
import type { Database, ToDeviceMessagesTable } from "../db/schema.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type ToDeviceRow = Selectable<ToDeviceMessagesTable>;

export interface NewToDeviceMessage {
  id: string;
  recipientDeviceId: string;
  recipientUserId: string;
  senderUserId: string;
  senderDeviceId: string;
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  algorithm: string;
  prekeyId: number;
}

export async function insertToDeviceMessages(tx: Db, messages: readonly NewToDeviceMessage[]): Promise<ToDeviceRow[]> {
  return tx
    .insertInto("to_device_messages")
    .values(
      messages.map((m) => ({
        id: m.id,
        recipient_device_id: m.recipientDeviceId,
        recipient_user_id: m.recipientUserId,
        sender_user_id: m.senderUserId,
        sender_device_id: m.senderDeviceId,
        ciphertext: m.ciphertext,
        nonce: m.nonce,
        algorithm: m.algorithm,
        prekey_id: m.prekeyId,
      })),
    )
    .returningAll()
    .execute();
}

/** The device's waiting messages after position `after`, oldest first. */
export async function listToDeviceMessages(db: Db, deviceId: string, after: string | null, limit: number): Promise<ToDeviceRow[]> {
  let query = db.selectFrom("to_device_messages").selectAll().where("recipient_device_id", "=", deviceId);
  if (after !== null) query = query.where("n", ">", after as never);
  return query.orderBy("n").limit(limit).execute();
}

/** Deletes the acknowledged messages; returns how many there were. */
export async function deleteToDeviceMessages(db: Db, deviceId: string, ids: readonly string[]): Promise<number> {
  const result = await db.deleteFrom("to_device_messages").where("recipient_device_id", "=", deviceId).where("id", "in", [...ids]).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Empties a (revoked) device's inbox. */
export async function emptyInbox(db: Db, deviceId: string): Promise<void> {
  await db.deleteFrom("to_device_messages").where("recipient_device_id", "=", deviceId).execute();
}
