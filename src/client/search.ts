/**
 * Search across plain and blind-search conversations. The server takes either a text query or
 * blind queries in one request, never both, so the SDK asks twice and merges: the app sees one
 * list, newest first.
 */
import type { Client } from "@connectrpc/connect";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { SearchOrder, type BlindQuery, type SearchHit, type SearchService } from "../../gen/parley/v1/search_service_pb.ts";
import { MAX_BLIND_QUERIES_PER_CALL, type MessageCodec } from "./codec.ts";
import { decodeMessage, type DecodedMessage } from "./message-decoder.ts";

/** Narrows a search. */
export interface SearchFilters {
  /** Only these conversations (default: all of the user's). */
  conversationIds?: string[];
  /** Only messages from this user. */
  senderId?: string;
  /** At most this many hits (default 20, at most 100). */
  limit?: number;
}

/** One hit: the decoded message, and the server's snippet for plain messages. */
export interface SearchResult {
  message: DecodedMessage;
  /** Highlighted parts of a plain message; empty for encrypted ones (the server cannot see them). */
  snippet: SearchHit["snippet"];
}

export interface SearchDeps {
  search: Client<typeof SearchService>;
  codec: MessageCodec | undefined;
  /** The conversations to search in, as currently known. */
  conversations(): Promise<Conversation[]>;
}

export async function searchMessages(deps: SearchDeps, query: string, filters: SearchFilters = {}): Promise<SearchResult[]> {
  const limit = Math.min(filters.limit ?? 20, 100);
  const wanted = filters.conversationIds ? new Set(filters.conversationIds) : undefined;
  const conversations = (await deps.conversations()).filter((c) => !wanted || wanted.has(c.id));
  const byId = new Map(conversations.map((c) => [c.id, c]));
  const plain = conversations.filter((c) => !c.encrypted);
  const blind = deps.codec ? conversations.filter((c) => c.encrypted && c.blindSearch) : [];
  const common = { senderId: filters.senderId ?? "", order: SearchOrder.RECENCY, pageSize: limit };

  const hits: SearchHit[] = [];
  // The query text goes to the server only when a plain conversation is searched: sending it
  // for blind-search conversations alone would show the server the very words the tokens hide.
  if (plain.length > 0) {
    // All of the user's conversations when unfiltered: encrypted ones hold no text to match.
    const ids = wanted ? plain.map((c) => c.id) : [];
    hits.push(...(await deps.search.searchMessages({ ...common, query, conversationIds: ids })).hits);
  }
  const blindQueries: BlindQuery[] = [];
  for (const c of blind) blindQueries.push(...(await deps.codec!.blindQueries(c, query)));
  for (let i = 0; i < blindQueries.length; i += MAX_BLIND_QUERIES_PER_CALL) {
    hits.push(...(await deps.search.searchMessages({ ...common, blindQueries: blindQueries.slice(i, i + MAX_BLIND_QUERIES_PER_CALL) })).hits);
  }

  const seen = new Set<string>();
  const unique = hits.filter((h) => h.message && !seen.has(h.message.id) && seen.add(h.message.id));
  unique.sort((a, b) => compareNewestFirst(a, b));
  const out: SearchResult[] = [];
  for (const h of unique.slice(0, limit)) {
    out.push({ message: await decodeMessage(byId.get(h.conversationId), h.message!, deps.codec), snippet: h.snippet });
  }
  return out;
}

function compareNewestFirst(a: SearchHit, b: SearchHit): number {
  const ta = a.message?.createdAt;
  const tb = b.message?.createdAt;
  const d = (tb?.seconds ?? 0n) - (ta?.seconds ?? 0n);
  if (d !== 0n) return d > 0n ? 1 : -1;
  return (tb?.nanos ?? 0) - (ta?.nanos ?? 0);
}
