/**
 * SearchService: validates a search, reads the caller's current conversations from
 * PostgreSQL, asks the index, and answers with the messages as they are stored now. A hit
 * whose message was deleted, or edited since the index saw it, is left out: the index may lag
 * the database by a moment, but a result never shows what is no longer there.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import {
  SearchHitSchema,
  SearchMessagesResponseSchema,
  SearchOrder,
  SnippetPartSchema,
  type SearchMessagesRequest,
  type SearchService as SearchServiceDesc,
} from "../../gen/parley/v1/search_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError } from "../errors.ts";
import { toMessage } from "../messages/message-mapper.ts";
import { toReactionSummaries } from "../reactions/reaction-mapper.ts";
import { findReactionSummaries, targetKey } from "../reactions/reaction-repository.ts";
import { findMessagesWithReply } from "../messages/message-repository.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { pageSize, requireUserId, requireUuid } from "../validation.ts";
import { snippet } from "./highlighter.ts";
import { parseQuery } from "./query-parser.ts";
import type { IndexHit, IndexQuery, SearchAfter, SearchIndex, SearchOrdering } from "./search-index.ts";
import { findMemberConversationIds } from "./search-repository.ts";
import { searchBlind, type SearchFilters } from "./blind-search.ts";
import { deadlinesAt, findRetentionSettings, RetentionPolicy, type RetentionCutoff } from "../retention/index.ts";

const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;
const MAX_CONVERSATION_IDS = 100;
/** The range of google.protobuf.Timestamp: years 0001 to 9999. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;
/** The last millisecond of year 9999, the latest time a bound can name. */
const MAX_MS = Number(MAX_SECONDS) * 1000 + 999;

export class SearchService implements ServiceImpl<typeof SearchServiceDesc> {
  readonly #db: Kysely<Database>;
  readonly #index: SearchIndex;
  readonly #retention: RetentionPolicy;

  /** `retention` is the deployment's (conversations' own are read when a search runs); none by default. */
  constructor(db: Kysely<Database>, index: SearchIndex, retention = new RetentionPolicy(null)) {
    this.#db = db;
    this.#index = index;
    this.#retention = retention;
  }

  async searchMessages(req: SearchMessagesRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const cutoff = this.#retention.at(new Date());
    if (req.blindQueries.length > 0) {
      if (req.query !== "") throw new InvalidInputError("blind_queries", "set query or blind_queries, not both");
      const page = await searchBlind(this.#db, userId, req.blindQueries, parseFilters(req), req.pageToken === "" ? null : afterOf(req), cutoff);
      return create(SearchMessagesResponseSchema, {
        hits: page.hits,
        nextPageToken: page.next === null ? "" : pageToken(req, page.next, walkOf(req).startedMs),
      });
    }
    const request = toIndexQuery(req);
    const walk = walkOf(req);
    const conversationIds = await findMemberConversationIds(this.#db, userId, req.conversationIds.length > 0 ? request.conversationIds : null);
    if (conversationIds.length === 0) return create(SearchMessagesResponseSchema, {});
    const settings = await findRetentionSettings(this.#db, conversationIds, this.#retention.deploymentSeconds !== null);
    const retainedAfterMs = new Map([...deadlinesAt(cutoff, settings)].map(([id, deadline]) => [id, deadline.getTime()]));
    const page = await this.#index.search({ ...request, conversationIds, retainedAfterMs });
    const messages = await this.#currentMessages(page.hits, userId, cutoff);
    const hits = page.hits.flatMap((hit) => {
      const message = messages.get(`${hit.conversationId}/${hit.seq}`);
      if (!message || !isCurrent(message, hit) || message.content.case !== "text") return [];
      if (request.order === "relevance" && editedSince(message, walk.startedMs)) return [];
      return [
        create(SearchHitSchema, {
          message,
          conversationId: hit.conversationId,
          snippet: snippet(message.content.value, request.query).map((run) => create(SnippetPartSchema, run)),
          score: hit.score,
        }),
      ];
    });
    return create(SearchMessagesResponseSchema, {
      hits,
      nextPageToken: page.next === null ? "" : pageToken(req, page.next, walk.startedMs),
    });
  }

  /**
   * The stored messages behind the hits, with reactions as the caller sees them, by
   * "conversation/seq"; none past retention (the index filtered them already, to its millisecond).
   * The messages and their reactions are read at once: both are keyed by the hits.
   */
  async #currentMessages(hits: readonly IndexHit[], viewerId: string, cutoff: RetentionCutoff): Promise<Map<string, Message>> {
    const targets = hits.map((h) => ({ conversationId: h.conversationId, seq: h.seq.toString(), userId: viewerId }));
    const [rows, summaries] = await Promise.all([
      findMessagesWithReply(this.#db, targets.map((t) => ({ conversation_id: t.conversationId, seq: t.seq })), cutoff),
      findReactionSummaries(this.#db, targets),
    ]);
    const reactions = toReactionSummaries(summaries);
    return new Map(
      rows.map((row) => [
        `${row.conversation_id}/${row.seq}`,
        toMessage(row, reactions.get(targetKey({ conversationId: row.conversation_id, seq: row.seq, userId: viewerId })) ?? []),
      ]),
    );
  }
}

/** The stored message is the version the index matched (0 means a message never versioned: 1). */
function isCurrent(message: Message, hit: IndexHit): boolean {
  return message.deletion === undefined && Math.max(message.version, 1) <= hit.version;
}

/**
 * A RELEVANCE walk leaves out, from its second page on, messages edited after its first page:
 * an edit changes a message's score and so its place in the order, and one already shown could
 * otherwise come back on a later page (or one not yet shown be skipped; either way it was changed
 * during the walk). RECENCY keys never change, so it needs no such rule.
 */
function editedSince(message: Message, startedMs: number | null): boolean {
  return startedMs !== null && message.editedAt !== undefined && timestampMs(message.editedAt) > startedMs;
}

/** When the walk a request continues began (null: this is its first page). */
function walkOf(req: SearchMessagesRequest): { startedMs: number | null } {
  if (req.pageToken === "") return { startedMs: null };
  const started = (decodePageToken("search", req.pageToken, ["w"] as const) as Record<string, unknown>).w;
  if (typeof started !== "number" || !Number.isSafeInteger(started)) throw new InvalidInputError("page_token", "is not a token this call issued");
  return { startedMs: started };
}

/** Checks every field; the conversation ids are the requested ones (membership comes later). */
function toIndexQuery(req: SearchMessagesRequest): IndexQuery {
  const query = parseQuery(req.query);
  if (req.conversationIds.length > MAX_CONVERSATION_IDS) throw new InvalidInputError("conversation_ids", `has more than ${MAX_CONVERSATION_IDS} ids`);
  const conversationIds = [...new Set(req.conversationIds.map((id) => requireUuid("conversation_ids", id)))];
  return {
    query,
    conversationIds,
    ...parseFilters(req),
    order: ordering(req.order),
    after: req.pageToken === "" ? null : afterOf(req),
  };
}

/** The filters plain and blind searches share, checked. */
function parseFilters(req: SearchMessagesRequest): SearchFilters {
  const createdFromMs = timestampMsCeil("created_after", req.createdAfter);
  let createdBeforeMs = timestampMsCeil("created_before", req.createdBefore);
  // Past the last representable millisecond, "before" bounds nothing.
  if (createdBeforeMs !== null && createdBeforeMs > MAX_MS) createdBeforeMs = null;
  if (createdFromMs !== null && createdBeforeMs !== null && createdBeforeMs <= createdFromMs) {
    throw new InvalidInputError("created_before", "must be later than created_after");
  }
  return {
    senderId: senderFilter(req.senderId),
    createdFromMs: createdFromMs === null ? null : Math.min(createdFromMs, MAX_MS),
    createdBeforeMs,
    limit: pageSize(req.pageSize, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
  };
}

/** A user id to filter by; one with a NUL character can name no user (and PostgreSQL text cannot hold it). */
function senderFilter(senderId: string): string | null {
  if (senderId === "") return null;
  if (senderId.includes("\u0000")) throw new InvalidInputError("sender_id", "is not a valid user id");
  return requireUserId("sender_id", senderId);
}

function ordering(order: SearchOrder): SearchOrdering {
  switch (order) {
    case SearchOrder.UNSPECIFIED:
    case SearchOrder.RELEVANCE:
      return "relevance";
    case SearchOrder.RECENCY:
      return "recency";
    default:
      throw new InvalidInputError("order", "is not a known order");
  }
}

/**
 * A bound in whole milliseconds (the precision of stored times), rounded up: for both an
 * inclusive lower and an exclusive upper bound, "t >= x" and "t < x" then hold exactly as
 * they would for the precise x.
 */
function timestampMsCeil(field: string, value: Timestamp | undefined): number | null {
  if (value === undefined) return null;
  if (value.seconds < MIN_SECONDS || value.seconds > MAX_SECONDS || value.nanos < 0 || value.nanos > 999_999_999) {
    throw new InvalidInputError(field, "is not a valid timestamp");
  }
  return Number(value.seconds) * 1000 + Math.ceil(value.nanos / 1_000_000);
}

/**
 * The format of the page positions tokens carry; bumped whenever they change meaning (2: the
 * PostgreSQL backend's tagged cursors, relevance windows), so a token from an earlier release
 * is refused with a clear reason instead of being read as something else.
 */
const TOKEN_VERSION = 2;

/** The next page's token; `startedMs` is when the walk began (null: it begins with this page). */
function pageToken(req: SearchMessagesRequest, next: SearchAfter, startedMs: number | null): string {
  return encodePageToken("search", { v: TOKEN_VERSION, r: requestFingerprint(req), a: JSON.stringify(next), w: startedMs ?? Date.now() });
}

/** The previous page's end, from a token issued for this same request. */
function afterOf(req: SearchMessagesRequest): SearchAfter {
  const token = decodePageToken("search", req.pageToken, ["r", "a"] as const);
  if ((token as Record<string, unknown>).v !== TOKEN_VERSION) {
    throw new InvalidInputError("page_token", "was issued by an earlier version of the server; start the search again without it");
  }
  if (token.r !== requestFingerprint(req)) throw new InvalidInputError("page_token", "was issued for a different search");
  let after: unknown;
  try {
    after = JSON.parse(String(token.a));
  } catch {
    after = null;
  }
  if (!Array.isArray(after) || !after.every((v) => typeof v === "string" || typeof v === "number")) {
    throw new InvalidInputError("page_token", "is not a token this call issued");
  }
  return after;
}

/** What makes two requests the same search (page size may change between pages). */
function requestFingerprint(req: SearchMessagesRequest): string {
  const fields = [
    req.query,
    [...req.conversationIds].map((id) => id.toLowerCase()).sort(),
    req.senderId,
    req.createdAfter ? [String(req.createdAfter.seconds), req.createdAfter.nanos] : null,
    req.createdBefore ? [String(req.createdBefore.seconds), req.createdBefore.nanos] : null,
    req.order === SearchOrder.UNSPECIFIED ? SearchOrder.RELEVANCE : req.order,
    req.blindQueries.map((q) => [q.conversationId.toLowerCase(), q.keyEpoch, q.tokens.map((t) => Buffer.from(t).toString("base64"))]),
  ];
  return createHash("sha256").update(JSON.stringify(fields)).digest("base64url").slice(0, 22);
}
