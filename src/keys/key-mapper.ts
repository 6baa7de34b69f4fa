/** Key directory rows ⇄ protobuf messages, in one place. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeviceSchema, PrekeySchema, ToDeviceMessageSchema, type Device, type Prekey, type ToDeviceMessage } from "../../gen/parley/v1/device_pb.ts";
import type { ClaimedPrekeyRow, DeviceRow } from "./device-repository.ts";
import type { ToDeviceRow } from "./to-device-repository.ts";

export function toDevice(row: DeviceRow, unclaimedPrekeys = 0): Device {
  return create(DeviceSchema, {
    deviceId: row.id,
    userId: row.user_id,
    signingPublicKey: row.signing_public_key,
    boxPublicKey: row.box_public_key,
    boxKeySignature: row.box_key_signature,
    displayName: row.display_name,
    createdAt: timestampFromDate(row.created_at),
    unclaimedPrekeys,
    revokedAt: row.revoked_at === null ? undefined : timestampFromDate(row.revoked_at),
  });
}

export function toPrekey(row: ClaimedPrekeyRow): Prekey {
  return create(PrekeySchema, { keyId: Number(row.key_id), publicKey: row.public_key, signature: row.signature });
}

export function toToDeviceMessage(row: ToDeviceRow): ToDeviceMessage {
  return create(ToDeviceMessageSchema, {
    id: row.id,
    recipientDeviceId: row.recipient_device_id,
    senderUserId: row.sender_user_id,
    senderDeviceId: row.sender_device_id,
    ciphertext: row.ciphertext,
    nonce: row.nonce,
    algorithm: row.algorithm,
    prekeyId: Number(row.prekey_id),
    createdAt: timestampFromDate(row.created_at),
  });
}
