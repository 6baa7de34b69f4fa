/** Edit-history and moderation-log rows to protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MessageEditSchema, ModerationLogEntrySchema, type MessageEdit, type ModerationLogEntry } from "../../gen/parley/v1/message_service_pb.ts";
import type { MessageEditRow, ModerationRow } from "./message-lifecycle-repository.ts";
import { toContent } from "./message-mapper.ts";

export function toMessageEdit(row: MessageEditRow): MessageEdit {
  return create(MessageEditSchema, {
    version: row.version,
    content: toContent(row),
    createdAt: timestampFromDate(row.created_at),
    replacedAt: timestampFromDate(row.replaced_at),
  });
}

export function toModerationEntry(row: ModerationRow): ModerationLogEntry {
  return create(ModerationLogEntrySchema, {
    messageId: row.message_id,
    messageSeq: BigInt(row.message_seq),
    senderId: row.sender_id,
    deletedBy: row.deleted_by,
    deletedAt: timestampFromDate(row.deleted_at),
  });
}
