/**
 * NotificationService: the caller's notifications (written by the notifier, see
 * src/workers/notifier.ts), their per-conversation settings and their email digest settings
 * (digests are sent by src/email/). Settings are for members only: a conversation the caller is
 * not in is NOT_FOUND.
 */
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  GetEmailDigestSettingsResponseSchema,
  GetNotificationSettingsResponseSchema,
  ListNotificationsResponseSchema,
  MarkNotificationsReadResponseSchema,
  SetEmailDigestSettingsResponseSchema,
  SetNotificationSettingsResponseSchema,
  type GetEmailDigestSettingsRequest,
  type GetNotificationSettingsRequest,
  type ListNotificationsRequest,
  type MarkNotificationsReadRequest,
  type NotificationService as NotificationServiceDesc,
  type SetEmailDigestSettingsRequest,
  type SetNotificationSettingsRequest,
} from "../../gen/parley/v1/notification_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { findRole } from "../conversations/conversation-repository.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { isUuid, pageSize, requireUuid } from "../validation.ts";
import { fromLevel, toListedNotification, toSettings } from "./notification-mapper.ts";
import * as repo from "./notification-repository.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";
import { emailAddressProblem } from "../email/email-address.ts";
import { fromFrequency, toDigestSettings } from "../email/digest-settings-mapper.ts";
import { findDigestSettings, Frequency, saveDigestSettings } from "../email/digest-settings-repository.ts";

const DEFAULT_PAGE = 20;
const MAX_PAGE = 100;
const MAX_MARK_IDS = 500;

export class NotificationService implements ServiceImpl<typeof NotificationServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #retention: RetentionPolicy;

  /** `retention` is the deployment's: previews of messages past retention are left out. None by default. */
  constructor(db: Kysely<Database>, retention = new RetentionPolicy(null)) {
    this.#db = db;
    this.#retention = retention;
  }

  async listNotifications(req: ListNotificationsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, MAX_PAGE);
    let after: repo.NotificationCursor | null = null;
    if (req.pageToken !== "") {
      const token = decodePageToken("notifications", req.pageToken, ["t", "i", "u"] as const);
      if (Boolean(token.u) !== req.unreadOnly) throw new InvalidInputError("page_token", "was issued for another unread_only");
      after = { createdUs: String(token.t), id: requireUuid("page_token", String(token.i)) };
    }
    const rows = await repo.listNotifications(this.#db, userId, req.unreadOnly, limit + 1, after, this.#retention.at(new Date()));
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListNotificationsResponseSchema, {
      notifications: page.map(toListedNotification),
      nextPageToken: rows.length > limit && last ? encodePageToken("notifications", { t: last.created_us, i: last.id, u: req.unreadOnly ? 1 : 0 }) : "",
      unreadCount: await repo.countUnread(this.#db, userId),
    });
  }

  async markNotificationsRead(req: MarkNotificationsReadRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    if (!req.all && req.notificationIds.length > MAX_MARK_IDS) throw new InvalidInputError("notification_ids", `must name at most ${MAX_MARK_IDS}`);
    // Ids that name none of the caller's notifications are ignored, malformed ones included.
    const ids = req.all ? "all" : [...new Set(req.notificationIds.filter(isUuid).map((id) => id.toLowerCase()))];
    const marked = await repo.markRead(this.#db, userId, ids);
    return create(MarkNotificationsReadResponseSchema, { marked, unreadCount: await repo.countUnread(this.#db, userId) });
  }

  async getNotificationSettings(req: GetNotificationSettingsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const conversationId = await this.#memberOf(req.conversationId, userId);
    const row = await repo.findSettings(this.#db, userId, conversationId);
    return create(GetNotificationSettingsResponseSchema, { settings: toSettings(conversationId, row) });
  }

  async setNotificationSettings(req: SetNotificationSettingsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const level = fromLevel(req.level);
    if (level === null) throw new InvalidInputError("level", "must be NOTIFICATION_LEVEL_ALL, NOTIFICATION_LEVEL_MENTIONS_ONLY or NOTIFICATION_LEVEL_NONE");
    const conversationId = await this.#memberOf(req.conversationId, userId);
    const mutedUntil = req.mutedUntil ? timestampDate(req.mutedUntil) : null;
    const muted = mutedUntil !== null && mutedUntil > new Date() ? mutedUntil : null;
    await repo.saveSettings(this.#db, userId, conversationId, level, muted);
    return create(SetNotificationSettingsResponseSchema, { settings: toSettings(conversationId, { level, muted_until: muted }) });
  }

  async #memberOf(rawConversationId: string, userId: string): Promise<string> {
    const conversationId = requireUuid("conversation_id", rawConversationId);
    if ((await findRole(this.#db, conversationId, userId)) === undefined) throw new NotFoundError("conversation");
    return conversationId;
  }

  async getEmailDigestSettings(_req: GetEmailDigestSettingsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    return create(GetEmailDigestSettingsResponseSchema, { settings: toDigestSettings(await findDigestSettings(this.#db, userId)) });
  }

  async setEmailDigestSettings(req: SetEmailDigestSettingsRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const frequency = fromFrequency(req.frequency);
    if (frequency === null) throw new InvalidInputError("frequency", "must be EMAIL_DIGEST_FREQUENCY_OFF, EMAIL_DIGEST_FREQUENCY_HOURLY or EMAIL_DIGEST_FREQUENCY_DAILY");
    // OFF may forget the address (empty); anything given is checked, so a stored address is always usable.
    if (req.emailAddress === "" && frequency !== Frequency.OFF) throw new InvalidInputError("email_address", "is required unless frequency is OFF");
    const problem = req.emailAddress === "" ? null : emailAddressProblem(req.emailAddress);
    if (problem !== null) throw new InvalidInputError("email_address", problem);
    const row = await saveDigestSettings(this.#db, userId, req.emailAddress, frequency);
    return create(SetEmailDigestSettingsResponseSchema, { settings: toDigestSettings(row) });
  }
}
