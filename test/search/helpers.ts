/**
 * Helpers for the search tests. Search is asynchronous (an indexer follows the message
 * events), so a test never sleeps: it polls SearchMessages until the result is what it
 * expects, with a deadline that fails naming what never came and what did.
 *
 * Negative checks ("X is never found") first wait for a fence: something the indexer saw
 * after the change (a later message found, or the new text of the same message). Anything
 * wrongly kept would be visible by then.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { SearchOrder, type SearchHit, type SearchMessagesResponse } from "../../gen/parley/v1/search_service_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import type { Clients } from "../helpers/test-server.ts";

/** How long a sent, edited or deleted message may take to show in search before a test fails. */
export const SEARCH_DEADLINE_MS = 10_000;

/** The fields of a SearchMessagesRequest, as the tests build them. */
export interface SearchRequest {
  query: string;
  conversationIds?: string[];
  senderId?: string;
  createdAfter?: Timestamp;
  createdBefore?: Timestamp;
  order?: SearchOrder;
  pageSize?: number;
  pageToken?: string;
}

/** The name of a SearchOrder value, e.g. "RECENCY". */
export function orderName(order: SearchOrder | undefined): string {
  if (order === undefined) return "unset";
  return Object.entries(SearchOrder).find(([, v]) => v === order)?.[0] ?? String(order);
}

type SearchClients = Pick<Clients, "search">;

/** Every hit of the request, following next_page_token to the end. */
export async function searchAll(clients: SearchClients, request: SearchRequest): Promise<SearchHit[]> {
  const hits: SearchHit[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1000; pages++) {
    const res: SearchMessagesResponse = await clients.search.searchMessages({ pageSize: 100, ...request, pageToken });
    hits.push(...res.hits);
    if (!res.nextPageToken) return hits;
    pageToken = res.nextPageToken;
  }
  throw new Error("SearchMessages never stopped returning a next_page_token");
}

/** The message ids of the hits, in order. */
export function hitIds(hits: readonly SearchHit[]): string[] {
  return hits.map((h) => h.message?.id ?? "(hit without a message)");
}

/** Names messages by their text in failure messages, so a wrong result reads as words. */
export class Names {
  readonly #byId = new Map<string, string>();

  add(...messages: Message[]): void {
    for (const m of messages) this.#byId.set(m.id, m.content.case === "text" ? `"${m.content.value.slice(0, 40)}"` : `${m.content.case ?? "?"}#${m.seq}`);
  }

  of(ids: readonly string[]): string {
    return `[${ids.map((id) => this.#byId.get(id) ?? `unknown ${id}`).join(", ")}]`;
  }
}

/**
 * Polls until the request's hits (all pages) are exactly these messages, in this order when
 * `ordered`, in any order otherwise. Returns the hits.
 */
export async function waitForHits(
  clients: SearchClients,
  request: SearchRequest,
  expected: readonly Message[],
  options: { ordered?: boolean; names?: Names; what?: string; timeoutMs?: number } = {},
): Promise<SearchHit[]> {
  const names = options.names ?? new Names();
  names.add(...expected);
  const want = expected.map((m) => m.id);
  const same = (got: string[]) =>
    options.ordered ? sameList(got, want) : sameList([...got].sort(), [...want].sort());
  const deadline = Date.now() + (options.timeoutMs ?? SEARCH_DEADLINE_MS);
  for (let delay = 25; ; delay = Math.min(delay * 2, 200)) {
    const hits = await searchAll(clients, request);
    const got = hitIds(hits);
    if (same(got)) return hits;
    if (Date.now() >= deadline) {
      const missing = want.filter((id) => !got.includes(id));
      const unexpected = got.filter((id) => !want.includes(id));
      assert.fail(
        `${options.what ?? `search ${JSON.stringify(request.query)}`}: after ${options.timeoutMs ?? SEARCH_DEADLINE_MS} ms ` +
          `missing ${names.of(missing)}, unexpected ${names.of(unexpected)}; expected ${options.ordered ? "" : "(any order) "}` +
          `${names.of(want)}, got ${names.of(got)}`,
      );
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** Asserts the request (all pages) finds nothing right now. */
export async function expectNoHits(clients: SearchClients, request: SearchRequest, what: string, names = new Names()): Promise<void> {
  const got = hitIds(await searchAll(clients, request));
  assert.deepEqual(got, [], `${what}: expected no hits, got ${names.of(got)}`);
}

/** Asserts the request (all pages) finds exactly these messages right now, in any order. */
export async function expectHits(clients: SearchClients, request: SearchRequest, expected: readonly Message[], what: string, names = new Names()): Promise<void> {
  names.add(...expected);
  const got = hitIds(await searchAll(clients, request));
  const want = expected.map((m) => m.id);
  assert.ok(sameList([...got].sort(), [...want].sort()), `${what}: expected ${names.of(want)}, got ${names.of(got)}`);
}

/**
 * Awaits a search that a user may make with odd input: it must either succeed or be refused
 * with INVALID_ARGUMENT, never fail any other way (INTERNAL, UNKNOWN...). Returns the
 * response, or null when it was refused.
 */
export async function saneOutcome(call: Promise<SearchMessagesResponse>, what: string): Promise<SearchMessagesResponse | null> {
  try {
    return await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    assert.equal(ce.code, Code.InvalidArgument, `${what}: expected hits or INVALID_ARGUMENT, got ${Code[ce.code]}: ${ce.rawMessage}`);
    return null;
  }
}

/** The text of a snippet, and its highlighted runs (lower-cased). */
export function snippetOf(hit: SearchHit): { text: string; highlighted: string[] } {
  return {
    text: hit.snippet.map((p) => p.text).join(""),
    highlighted: hit.snippet.filter((p) => p.highlighted).map((p) => p.text.toLowerCase()),
  };
}

/** The fields of an EncryptedEnvelope. */
export interface Envelope {
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  algorithm: string;
  keyId: string;
  keyEpoch: number;
}

/**
 * A "null cipher" envelope: the ciphertext is the plaintext's bytes and the other fields hold
 * the words too, so any envelope field that reached the index would match.
 */
export function transparentEnvelope(plaintext: string): Envelope {
  const bytes = new TextEncoder().encode(plaintext);
  return { ciphertext: bytes, nonce: bytes.slice(0, 24), algorithm: plaintext, keyId: plaintext, keyEpoch: 1 };
}

/** The lifecycle calls (issue 5) as these tests use them: each returns the stored message. */
export interface Lifecycle {
  editText(conversationId: string, seq: bigint, text: string): Promise<Message>;
  editEnvelope(conversationId: string, seq: bigint, envelope: Envelope): Promise<Message>;
  delete(conversationId: string, seq: bigint): Promise<Message>;
}

export function lifecycleOf(clients: Clients): Lifecycle {
  const messageOf = async (call: Promise<{ message?: Message }>, what: string) => {
    const res = await call;
    if (!res.message) throw new Error(`${what} returned no message`);
    return res.message;
  };
  return {
    editText: (conversationId, seq, text) =>
      messageOf(clients.messages.editMessage({ conversationId, seq, content: { case: "text", value: text } }), "EditMessage"),
    editEnvelope: (conversationId, seq, envelope) =>
      messageOf(clients.messages.editMessage({ conversationId, seq, content: { case: "envelope", value: envelope } }), "EditMessage"),
    delete: (conversationId, seq) => messageOf(clients.messages.deleteMessage({ conversationId, seq }), "DeleteMessage"),
  };
}

/** A word no other test uses: letters only, so every backend sees one token. */
export function uniqueWord(prefix = "zq"): string {
  let word = prefix;
  for (let i = 0; i < 10; i++) word += String.fromCharCode(97 + randomInt(26));
  return word;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
