/** User rows to protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { UserSchema, type User } from "../../gen/parley/v1/user_pb.ts";
import type { UserRow } from "./user-repository.ts";

export function toUser(row: UserRow): User {
  return create(UserSchema, {
    id: row.id,
    displayName: row.display_name,
    avatarMediaId: row.avatar_media_id,
    createdAt: timestampFromDate(row.created_at),
    updatedAt: timestampFromDate(row.updated_at),
  });
}
