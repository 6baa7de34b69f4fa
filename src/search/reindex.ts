/**
 * Rebuilds the search index from PostgreSQL, the source of truth: every message in
 * (conversation_id, seq) order, in batches, into the backend's rebuild target, which becomes
 * live at the end (OpenSearch: an alias swap; PostgreSQL: rows rewritten in place). After each
 * batch the position is stored in search_reindex, so an interrupted run resumes where it
 * stopped, into the same target. Live indexing goes on meanwhile; versions keep the two from
 * undoing each other.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import { toMessage } from "../messages/message-mapper.ts";
import type { MessageRow } from "../messages/message-repository.ts";
import { toIndexedMessage } from "./message-document.ts";
import type { IndexedMessage, RemovedMessage, SearchIndex } from "./search-index.ts";

export interface ReindexProgress {
  /** Messages read so far, in this run and the runs it resumes. */
  copied: number;
  /** Messages in the database when this run started. */
  total: number;
  /** True when this run continues an interrupted one. */
  resumed: boolean;
}

export interface ReindexOptions {
  db: Kysely<Database>;
  index: SearchIndex;
  /** Messages per read and per index write. */
  batchSize?: number;
  /** Forget a stored position and start over. */
  restart?: boolean;
  onProgress?(progress: ReindexProgress): void;
}

interface Position {
  conversationId: string;
  seq: string;
}

interface StateRow {
  target: string;
  after_conversation_id: string | null;
  after_seq: string | null;
  copied: string;
}

export async function reindex({ db, index, batchSize = 1000, restart = false, onProgress }: ReindexOptions): Promise<ReindexProgress> {
  const backend = index.backend;
  if (restart) await sql`delete from search_reindex where backend = ${backend}`.execute(db);
  const state = (await sql<StateRow>`select target, after_conversation_id, after_seq, copied from search_reindex where backend = ${backend}`.execute(db)).rows[0];
  const rebuild = await index.rebuild(state?.target ?? null);
  if (!state) await sql`insert into search_reindex (backend, target) values (${backend}, ${rebuild.target})`.execute(db);
  let after: Position | null = state?.after_conversation_id ? { conversationId: state.after_conversation_id, seq: state.after_seq ?? "0" } : null;
  const total = Number((await sql<{ n: string }>`select count(*) as n from messages`.execute(db)).rows[0]!.n);
  const progress: ReindexProgress = { copied: Number(state?.copied ?? 0), total, resumed: state !== undefined };
  onProgress?.(progress);
  for (;;) {
    const rows = await readBatch(db, after, batchSize);
    if (rows.length === 0) break;
    await rebuild.write(changesOf(rows));
    const last = rows.at(-1)!;
    after = { conversationId: last.conversation_id, seq: last.seq };
    progress.copied += rows.length;
    await sql`
      update search_reindex set after_conversation_id = ${after.conversationId}, after_seq = ${after.seq},
        copied = ${progress.copied}, updated_at = now()
      where backend = ${backend}`.execute(db);
    onProgress?.(progress);
  }
  await rebuild.finish();
  await sql`delete from search_reindex where backend = ${backend}`.execute(db);
  return progress;
}

async function readBatch(db: Kysely<Database>, after: Position | null, limit: number): Promise<MessageRow[]> {
  const from = after === null ? sql`true` : sql`(conversation_id, seq) > (${after.conversationId}::uuid, ${after.seq}::int8)`;
  return (await sql<MessageRow>`select * from messages where ${from} order by conversation_id, seq limit ${limit}`.execute(db)).rows;
}

/** Text messages are written; deleted ones become tombstones; encrypted ones are left out. */
function changesOf(rows: readonly MessageRow[]) {
  const upserts: IndexedMessage[] = [];
  const removals: RemovedMessage[] = [];
  for (const row of rows) {
    const message = toMessage(row);
    const document = toIndexedMessage(message);
    if (document) upserts.push(document);
    else if (message.deletion !== undefined) removals.push({ conversationId: message.conversationId, seq: message.seq, messageId: message.id });
  }
  return { upserts, removals };
}
