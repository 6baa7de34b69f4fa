/** The events key changes record, built in one place. */
import { create } from "@bufbuild/protobuf";
import { DeviceChangedSchema, ToDeviceMessageReceivedSchema } from "../../gen/parley/v1/event_pb.ts";
import type { ToDeviceMessage } from "../../gen/parley/v1/device_pb.ts";
import type { NewEvent } from "../log/event-log.ts";

/**
 * A device registered or revoked: one event in each of the owner's encrypted conversations
 * (with its key epoch after the change), so the members' clients update their device lists,
 * and one to the owner, for their other devices.
 */
export function deviceChanged(
  userId: string,
  deviceId: string,
  revoked: boolean,
  conversations: ReadonlyArray<{ id: string; key_epoch: number }>,
): NewEvent[] {
  const payload = (keyEpoch: number) => ({ case: "deviceChanged" as const, value: create(DeviceChangedSchema, { userId, deviceId, revoked, keyEpoch }) });
  return [
    { conversationId: null, targetUserId: userId, actorId: userId, kind: payload(0) },
    ...conversations.map((c) => ({ conversationId: c.id, actorId: userId, kind: payload(c.key_epoch) })),
  ];
}

/** Announces a to-device message to its recipient's user (their device picks it out). */
export function toDeviceMessageReceived(recipientUserId: string, message: ToDeviceMessage): NewEvent {
  return {
    conversationId: null,
    targetUserId: recipientUserId,
    actorId: message.senderUserId,
    kind: { case: "toDeviceMessage", value: create(ToDeviceMessageReceivedSchema, { message }) },
  };
}
