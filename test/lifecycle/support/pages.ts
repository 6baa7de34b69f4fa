/** Walking paginated lists the way a client does, checking the page size on the way. */
import assert from "node:assert/strict";
import type { Conversation } from "../../../gen/parley/v1/conversation_pb.ts";
import { listAllConversations } from "../../helpers/fixtures.ts";
import type { Clients } from "../../helpers/test-server.ts";

/**
 * Follows next_page_token from the first page until it is empty, asserting that no page holds
 * more than pageSize items; returns every page in order.
 */
export async function walkPages<T>(
  pageSize: number,
  fetchPage: (pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>,
): Promise<T[][]> {
  const pages: T[][] = [];
  let pageToken = "";
  for (let i = 0; i < 1_000; i++) {
    const { items, nextPageToken } = await fetchPage(pageToken);
    assert.ok(items.length <= pageSize, `a page holds at most page_size (${items.length} > ${pageSize})`);
    pages.push(items);
    if (!nextPageToken) return pages;
    pageToken = nextPageToken;
  }
  throw new Error("the list never stopped returning a next_page_token");
}

/** The caller's entry for one conversation in ListConversations (undefined when not listed). */
export async function listedConversation(clients: Clients, conversationId: string): Promise<Conversation | undefined> {
  return (await listAllConversations(clients)).find((x) => x.id === conversationId);
}
