/** Media rows to protobuf Media. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { MediaSchema, type Media, type MediaType } from "../../gen/parley/v1/media_pb.ts";
import type { MediaRow } from "./media-repository.ts";

export function toMedia(row: MediaRow): Media {
  return create(MediaSchema, {
    id: row.id,
    ownerId: row.owner_id,
    type: row.type as MediaType,
    contentType: row.content_type,
    sizeBytes: BigInt(row.size_bytes),
    createdAt: timestampFromDate(row.created_at),
    conversationId: row.conversation_id ?? "",
  });
}
