/**
 * The OpenSearch backend (OPENSEARCH_URL). Documents are messages: id = message id, routed by
 * conversation id (a conversation lives on one shard), written with external versioning by
 * message version, so a stale or replayed event is rejected by OpenSearch itself. A delete
 * writes a tombstone document at the highest version rather than deleting (OpenSearch forgets
 * delete versions after index.gc_deletes, and then a replayed create would come back).
 *
 * Names: indices `<prefix>-v<time>` (the template gives them the analyzer and mappings), the
 * read alias `<prefix>` (one index) and the write alias `<prefix>-write` (every index being
 * kept up to date: two while a rebuild runs). Queries are built from the parsed query as
 * match_phrase clauses, whose text is analyzed, never parsed as query syntax.
 */
import type { API, Client } from "@opensearch-project/opensearch";
import { InvalidInputError } from "../errors.ts";
import type { SearchTerm } from "./query-parser.ts";
import {
  collapseChanges,
  type IndexChanges,
  type IndexHit,
  type IndexPage,
  type IndexQuery,
  type IndexRebuild,
  type SearchAfter,
  type SearchIndex,
} from "./search-index.ts";

export interface OpenSearchOptions {
  client: Client;
  /** Names the template, indices and aliases (default "parley-messages"). */
  prefix?: string;
  /** How long the list of write indices is cached (default 5 s); a rebuild waits this long before copying. */
  writersCacheMs?: number;
}

/** Above any message version (an int32): a tombstone outranks every edit. Written exactly in JSON. */
export const TOMBSTONE_VERSION = 1e15;
/** Searches naming more conversations than this go to every shard instead of routing. */
const MAX_ROUTING_VALUES = 100;

/** The analysis and mappings every message index gets (exported for the tests that check them). */
export function indexTemplate(prefix: string): API.Indices_PutIndexTemplate_RequestBody {
  return {
    index_patterns: [`${prefix}-v*`],
    template: {
      settings: {
        analysis: {
          filter: {
            // Index both "café" and "cafe": exact matches score higher, folded ones still match.
            folding_keep_original: { type: "asciifolding", preserve_original: true },
          },
          analyzer: {
            message_text: { type: "custom", tokenizer: "standard", filter: ["lowercase", "folding_keep_original"] },
            message_query: { type: "custom", tokenizer: "standard", filter: ["lowercase", "asciifolding"] },
          },
        },
      },
      mappings: {
        dynamic: "strict",
        properties: {
          conversation_id: { type: "keyword" },
          seq: { type: "long" },
          message_id: { type: "keyword" },
          version: { type: "long" },
          sender_id: { type: "keyword" },
          created_at: { type: "date", format: "epoch_millis" },
          deleted: { type: "boolean" },
          body: { type: "text", analyzer: "message_text", search_analyzer: "message_query" },
        },
      },
    },
  };
}

export function createOpenSearch(options: OpenSearchOptions): SearchIndex {
  const { client } = options;
  const prefix = options.prefix ?? "parley-messages";
  const readAlias = prefix;
  const writeAlias = `${prefix}-write`;
  const writersCacheMs = options.writersCacheMs ?? 5_000;
  let ready: Promise<void> | null = null;
  let writers: { indices: string[]; until: number } | null = null;

  /** The template, and a first index behind both aliases when there is none yet. */
  function ensureReady(): Promise<void> {
    ready ??= (async () => {
      await client.indices.putIndexTemplate({ name: prefix, body: indexTemplate(prefix) });
      const exists = await client.indices.existsAlias({ name: readAlias });
      if (exists.body) return;
      const first = newIndexName(prefix);
      await client.indices.create({ index: first, body: { aliases: { [readAlias]: {}, [writeAlias]: {} } } });
    })().catch((error: unknown) => {
      ready = null;
      throw error;
    });
    return ready;
  }

  async function aliasIndices(alias: string): Promise<string[]> {
    const response = await client.indices.getAlias({ name: alias });
    return Object.keys(response.body as Record<string, unknown>);
  }

  async function writeIndices(): Promise<string[]> {
    if (writers && writers.until > Date.now()) return writers.indices;
    await ensureReady();
    const indices = await aliasIndices(writeAlias);
    writers = { indices, until: Date.now() + writersCacheMs };
    return indices;
  }

  /** One bulk request; a version conflict means the index already has this or a newer version. */
  async function bulk(indices: readonly string[], changes: IndexChanges, versionType: "external" | "external_gte"): Promise<void> {
    const { upserts, removals } = collapseChanges(changes);
    const body: object[] = [];
    for (const index of indices) {
      for (const m of upserts) {
        body.push({ index: { _index: index, _id: m.messageId, routing: m.conversationId, version: m.version, version_type: versionType } });
        body.push({
          conversation_id: m.conversationId,
          seq: Number(m.seq),
          message_id: m.messageId,
          version: m.version,
          sender_id: m.senderId,
          created_at: m.createdAt.getTime(),
          deleted: false,
          body: m.text,
        });
      }
      for (const r of removals) {
        body.push({ index: { _index: index, _id: r.messageId, routing: r.conversationId, version: TOMBSTONE_VERSION, version_type: "external_gte" } });
        body.push({ conversation_id: r.conversationId, seq: Number(r.seq), message_id: r.messageId, version: TOMBSTONE_VERSION, deleted: true });
      }
    }
    if (body.length === 0) return;
    const response = await client.bulk({ body });
    if (!response.body.errors) return;
    const failed = response.body.items.map((item) => Object.values(item)[0]!).filter((result) => result.status !== 409 && (result.status < 200 || result.status > 299));
    if (failed.length > 0) throw new Error(`OpenSearch bulk: ${failed.length} writes failed, first: ${JSON.stringify(failed[0]!.error)}`);
  }

  async function search(q: IndexQuery): Promise<IndexPage> {
    await ensureReady();
    const relevance = q.order === "relevance";
    const filter: object[] = [conversationFilter(q.conversationIds, q.retainedAfterMs), { term: { deleted: false } }];
    if (q.senderId !== null) filter.push({ term: { sender_id: q.senderId } });
    if (q.createdFromMs !== null || q.createdBeforeMs !== null) {
      filter.push({ range: { created_at: { ...(q.createdFromMs !== null && { gte: q.createdFromMs }), ...(q.createdBeforeMs !== null && { lt: q.createdBeforeMs }) } } });
    }
    const response = await client.search({
      index: readAlias,
      ...(q.conversationIds.length <= MAX_ROUTING_VALUES && { routing: q.conversationIds.join(",") }),
      body: {
        size: q.limit + 1,
        track_total_hits: false,
        track_scores: true,
        _source: ["conversation_id", "seq", "message_id", "version"],
        query: { bool: { must: q.query.include.map(phrase), must_not: q.query.exclude.map(phrase), filter } },
        sort: relevance
          ? [{ _score: { order: "desc" } }, { created_at: { order: "desc" } }, { message_id: { order: "desc" } }]
          : [{ created_at: { order: "desc" } }, { message_id: { order: "desc" } }],
        ...(q.after !== null && { search_after: [...checkedAfter(q.after, relevance)] }),
      },
    });
    const found = response.body.hits.hits;
    const page = found.slice(0, q.limit);
    const hits = page.map((hit): IndexHit => {
      const source = hit._source as { conversation_id: string; seq: number; message_id: string; version: number };
      return { conversationId: source.conversation_id, seq: BigInt(source.seq), messageId: source.message_id, version: source.version, score: Number(hit._score ?? 0) };
    });
    const last = page.at(-1);
    return { hits, next: found.length > q.limit && last?.sort ? (last.sort as (string | number)[]) : null };
  }

  return {
    backend: "opensearch",
    apply: async (changes) => bulk(await writeIndices(), changes, "external"),
    search,
    async rebuild(resumeTarget): Promise<IndexRebuild> {
      await ensureReady();
      const target = resumeTarget ?? newIndexName(prefix);
      if (!(await client.indices.exists({ index: target })).body) await client.indices.create({ index: target });
      await client.indices.updateAliases({ body: { actions: [{ add: { index: target, alias: writeAlias } }] } });
      // Every node's indexer now writes to the new index too, once its cached list expires;
      // whatever it wrote before that is in PostgreSQL, which the copy reads afterwards.
      await new Promise((resolve) => setTimeout(resolve, writersCacheMs));
      return {
        target,
        write: (changes) => bulk([target], changes, "external_gte"),
        async finish() {
          const old = (await aliasIndices(readAlias)).filter((index) => index !== target);
          await client.indices.updateAliases({
            body: {
              actions: [
                { add: { index: target, alias: readAlias } },
                ...old.flatMap((index) => [{ remove: { index, alias: readAlias } }, { remove: { index, alias: writeAlias } }]),
              ],
            },
          });
          writers = null;
          if (old.length > 0) await client.indices.delete({ index: old });
        },
      };
    },
    close: () => client.close(),
  };
}

function newIndexName(prefix: string): string {
  return `${prefix}-v${Date.now()}`;
}

/**
 * The conversations to search, each with its retention: a plain terms filter when none has a
 * deadline; otherwise one clause per deadline (conversations sharing one — all of them under a
 * deployment retention — share the clause) that admits only messages created after it, plus
 * one for the conversations without a deadline. Exported for the tests that check the DSL.
 */
export function conversationFilter(conversationIds: readonly string[], retainedAfterMs: ReadonlyMap<string, number> = new Map()): object {
  const open: string[] = [];
  const byDeadline = new Map<number, string[]>();
  for (const id of conversationIds) {
    const deadline = retainedAfterMs.get(id);
    if (deadline === undefined) open.push(id);
    else byDeadline.set(deadline, [...(byDeadline.get(deadline) ?? []), id]);
  }
  if (byDeadline.size === 0) return { terms: { conversation_id: [...conversationIds] } };
  const should: object[] = open.length > 0 ? [{ terms: { conversation_id: open } }] : [];
  for (const [deadline, ids] of byDeadline) {
    should.push({ bool: { filter: [{ terms: { conversation_id: ids } }, { range: { created_at: { gt: deadline } } }] } });
  }
  return { bool: { should, minimum_should_match: 1 } };
}

/** A phrase clause: OpenSearch analyzes the text as the body is analyzed; nothing in it is syntax. */
function phrase(term: SearchTerm): object {
  return { match_phrase: { body: { query: term.text } } };
}

/** A sort key from a previous page: [score, created_at, message_id] or [created_at, message_id]. */
function checkedAfter(after: SearchAfter, relevance: boolean): SearchAfter {
  const expected = relevance ? ["number", "number", "string"] : ["number", "string"];
  const valid = after.length === expected.length && after.every((value, i) => typeof value === expected[i] && (typeof value !== "number" || Number.isFinite(value)));
  if (!valid) throw new InvalidInputError("page_token", "is not a token this call issued");
  return after;
}
