/**
 * AnalyticsService: reads the hourly and daily rollups the analytics consumer keeps, and lets
 * operators recompute them from the raw tables.
 *
 * Who sees what: a conversation's figures are its admins' and operators' (anyone else gets
 * NOT_FOUND, as for everything about a conversation they may not see); an author's story
 * figures are the author's and operators'. Another user's story figures are PERMISSION_DENIED,
 * not NOT_FOUND: user ids are public (profiles, follows), so the answer reveals nothing, and the
 * refusal is about the caller's role, like the operator-only methods.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  GetConversationAnalyticsResponseSchema,
  GetDeploymentAnalyticsResponseSchema,
  GetStoryAnalyticsResponseSchema,
  RebuildAnalyticsResponseSchema,
  type AnalyticsService as AnalyticsServiceDesc,
  type GetConversationAnalyticsRequest,
  type GetDeploymentAnalyticsRequest,
  type GetStoryAnalyticsRequest,
} from "../../gen/parley/v1/analytics_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { findRole, Role } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { NotFoundError, PermissionDeniedError } from "../errors.ts";
import type { EventLogLayout } from "../log/event-log.ts";
import { findUser } from "../users/user-repository.ts";
import { requireUserId, requireUuid } from "../validation.ts";
import { rebuildAnalytics } from "./analytics-consumer.ts";
import { toConversationBucket, toDeploymentBucket, toStoryBucket } from "./analytics-mapper.ts";
import { requireRange } from "./analytics-range.ts";
import * as repo from "./analytics-repository.ts";

export interface AnalyticsServiceOptions {
  db: Kysely<Database>;
  log: EventLogLayout;
}

export class AnalyticsService implements ServiceImpl<typeof AnalyticsServiceDesc> {
  readonly #o: AnalyticsServiceOptions;

  constructor(options: AnalyticsServiceOptions) {
    this.#o = options;
  }

  async getConversationAnalytics(req: GetConversationAnalyticsRequest, ctx: HandlerContext) {
    const caller = requireCaller(ctx);
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const range = requireRange(req.range);
    const visible = caller.operator
      ? await repo.conversationExists(this.#o.db, conversationId)
      : (await findRole(this.#o.db, conversationId, caller.userId)) === Role.ADMIN;
    if (!visible) throw new NotFoundError("conversation");
    const rows = await repo.findConversationBuckets(this.#o.db, conversationId, range);
    return create(GetConversationAnalyticsResponseSchema, { buckets: rows.map(toConversationBucket) });
  }

  async getStoryAnalytics(req: GetStoryAnalyticsRequest, ctx: HandlerContext) {
    const caller = requireCaller(ctx);
    const authorId = req.authorId === "" ? caller.userId : requireUserId("author_id", req.authorId);
    if (authorId !== caller.userId && !caller.operator) throw new PermissionDeniedError("only operators see another author's story figures", "OPERATOR_REQUIRED");
    const range = requireRange(req.range);
    if (authorId !== caller.userId && !(await findUser(this.#o.db, authorId))) throw new NotFoundError("user");
    const rows = await repo.findAuthorBuckets(this.#o.db, authorId, range);
    return create(GetStoryAnalyticsResponseSchema, { buckets: rows.map(toStoryBucket) });
  }

  async getDeploymentAnalytics(req: GetDeploymentAnalyticsRequest, ctx: HandlerContext) {
    requireOperator(ctx);
    const rows = await repo.findDeploymentBuckets(this.#o.db, requireRange(req.range));
    return create(GetDeploymentAnalyticsResponseSchema, { buckets: rows.map(toDeploymentBucket) });
  }

  async rebuildAnalytics(_req: unknown, ctx: HandlerContext) {
    requireOperator(ctx);
    const started = Date.now();
    const { hourlyRows } = await rebuildAnalytics(this.#o.db, this.#o.log);
    return create(RebuildAnalyticsResponseSchema, { hourlyRows: BigInt(hourlyRows), elapsedMs: BigInt(Date.now() - started) });
  }
}

/** Operator-only methods check the role before reading any input. */
function requireOperator(ctx: HandlerContext): void {
  if (!requireCaller(ctx).operator) throw new PermissionDeniedError("the operator role is required", "OPERATOR_REQUIRED");
}
