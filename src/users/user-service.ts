/**
 * UserService: profiles, and deleting one's account. Any authenticated user may read any
 * profile. Erasing an account is the AccountEraser's work; this checks the request.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  BatchGetUsersResponseSchema,
  DeleteAccountResponseSchema,
  GetMeResponseSchema,
  GetUserResponseSchema,
  UpdateProfileResponseSchema,
  type UserService as UserServiceDesc,
} from "../../gen/parley/v1/user_service_pb.ts";
import type { BatchGetUsersRequest, DeleteAccountRequest, GetUserRequest, UpdateProfileRequest } from "../../gen/parley/v1/user_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Limits } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { boundedText, requireUserId } from "../validation.ts";
import type { AccountEraser } from "./account-eraser.ts";
import { toUser } from "./user-mapper.ts";
import { findUser, findUsers, updateUser } from "./user-repository.ts";

/** Most ids one BatchGetUsers call may ask for. */
export const MAX_BATCH_USERS = 100;

export class UserService implements ServiceImpl<typeof UserServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #limits: Limits;
  readonly #eraser: AccountEraser;

  constructor(db: Kysely<Database>, limits: Limits, eraser: AccountEraser) {
    this.#db = db;
    this.#limits = limits;
    this.#eraser = eraser;
  }

  async getMe(_req: unknown, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const row = await findUser(this.#db, userId);
    if (!row) throw new NotFoundError("user");
    return create(GetMeResponseSchema, { user: toUser(row) });
  }

  async getUser(req: GetUserRequest, ctx: HandlerContext) {
    requireCaller(ctx);
    const row = await findUser(this.#db, requireUserId("user_id", req.userId));
    if (!row) throw new NotFoundError("user");
    return create(GetUserResponseSchema, { user: toUser(row) });
  }

  async batchGetUsers(req: BatchGetUsersRequest, ctx: HandlerContext) {
    requireCaller(ctx);
    if (req.userIds.length > MAX_BATCH_USERS) {
      throw new InvalidInputError("user_ids", `must name at most ${MAX_BATCH_USERS} users`);
    }
    const ids = req.userIds.map((id, i) => requireUserId(`user_ids[${i}]`, id));
    const byId = new Map((await findUsers(this.#db, [...new Set(ids)])).map((row) => [row.id, row]));
    const users = ids.flatMap((id) => {
      const row = byId.get(id);
      return row ? [toUser(row)] : [];
    });
    return create(BatchGetUsersResponseSchema, { users });
  }

  async deleteAccount(req: DeleteAccountRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (req.confirmUserId !== userId) {
      throw new InvalidInputError("confirm_user_id", req.confirmUserId === "" ? "is required: your own user id, to confirm" : "must be your own user id");
    }
    return create(DeleteAccountResponseSchema, { messagesErased: await this.#eraser.erase(userId, ctx.signal) });
  }

  async updateProfile(req: UpdateProfileRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const displayName =
      req.displayName === undefined ? undefined : boundedText("display_name", req.displayName.trim(), this.#limits.maxDisplayNameLength);
    const avatarMediaId = req.avatarMediaId === undefined ? undefined : boundedText("avatar_media_id", req.avatarMediaId, 64);
    const row = await updateUser(this.#db, userId, {
      ...(displayName !== undefined && { displayName }),
      ...(avatarMediaId !== undefined && { avatarMediaId }),
    });
    if (!row) throw new NotFoundError("user");
    return create(UpdateProfileResponseSchema, { user: toUser(row) });
  }
}
