/**
 * Search inside encrypted conversations by blind-index tokens. The client derives the tokens
 * from its words with a key the server never has; the server matches them byte for byte within
 * the conversation and key epoch they were made for, applies the same filters as plain search,
 * and answers newest first, without snippets (it has no text to cut them from).
 */
import { create } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { SearchHitSchema, type BlindQuery, type SearchHit } from "../../gen/parley/v1/search_service_pb.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError } from "../errors.ts";
import { findMessagesWithReply } from "../messages/message-repository.ts";
import { toMessagesWithReactions } from "../messages/messages-with-reactions.ts";
import { requireInt4, requireInt8Digits, requireUuid } from "../validation.ts";
import { findBlindMatches, type BlindMatch } from "./blind-index-repository.ts";
import { parseBlindTokens } from "./blind-tokens.ts";
import { findMemberConversationIds } from "./search-repository.ts";
import type { SearchAfter } from "./search-index.ts";
import type { RetentionCutoff } from "../retention/retention-policy.ts";

const MAX_BLIND_QUERIES = 64;
const MAX_QUERY_TOKENS = 16;

/** The filters every search takes. */
export interface SearchFilters {
  senderId: string | null;
  createdFromMs: number | null;
  createdBeforeMs: number | null;
  limit: number;
}

/** A page of blind hits and where the next page starts (null at the end). */
export interface BlindPage {
  hits: SearchHit[];
  next: SearchAfter | null;
}

export async function searchBlind(
  db: Kysely<Database>,
  userId: string,
  queries: readonly BlindQuery[],
  filters: SearchFilters,
  after: SearchAfter | null,
  cutoff: RetentionCutoff,
): Promise<BlindPage> {
  const matches = parseBlindQueries(queries);
  // Conversations the caller has left, or that never had blind search, simply never match.
  const searchable = new Set(await findMemberConversationIds(db, userId, [...new Set(matches.map((m) => m.conversationId))], { blindSearch: true }));
  const allowed = matches.filter((m) => searchable.has(m.conversationId));
  if (allowed.length === 0) return { hits: [], next: null };
  const rows = await findBlindMatches(db, allowed, { ...filters, after: afterPosition(after), limit: filters.limit + 1 }, cutoff);
  const page = rows.slice(0, filters.limit);
  const stored = await findMessagesWithReply(db, page.map((r) => ({ conversation_id: r.conversation_id, seq: r.seq })), cutoff);
  const messages = await toMessagesWithReactions(db, stored, userId);
  const byPosition = new Map(stored.map((row, i) => [`${row.conversation_id}/${row.seq}`, messages[i]!]));
  const last = page.at(-1);
  return {
    hits: page.flatMap((row) => {
      const message = byPosition.get(`${row.conversation_id}/${row.seq}`);
      return message ? [create(SearchHitSchema, { message, conversationId: row.conversation_id })] : [];
    }),
    next: rows.length > filters.limit && last ? [last.created_us, last.conversation_id, last.seq] : null,
  };
}

function parseBlindQueries(queries: readonly BlindQuery[]): BlindMatch[] {
  if (queries.length > MAX_BLIND_QUERIES) throw new InvalidInputError("blind_queries", `has more than ${MAX_BLIND_QUERIES} queries`);
  return queries.map((query, i) => {
    const field = `blind_queries[${i}]`;
    return {
      conversationId: requireUuid(`${field}.conversation_id`, query.conversationId),
      keyEpoch: requireInt4(`${field}.key_epoch`, query.keyEpoch),
      tokens: parseBlindTokens(`${field}.tokens`, query.tokens, { min: 1, max: MAX_QUERY_TOKENS }),
    };
  });
}

function afterPosition(after: SearchAfter | null) {
  if (after === null) return null;
  const [createdUs, conversationId, seq] = after.map(String);
  if (after.length !== 3) throw new InvalidInputError("page_token", "is not a token this call issued");
  return {
    createdUs: requireInt8Digits("page_token", createdUs!),
    conversationId: requireUuid("page_token", conversationId!),
    seq: requireInt8Digits("page_token", seq!),
  };
}
