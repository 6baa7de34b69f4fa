/**
 * A conversation's history as JSON Lines: chunk 0 writes the header (the conversation) and the
 * members; chunks 1..n each write the messages of one seq range, in seq order, so the parts
 * joined in chunk order are the whole history in order. Messages past retention when a chunk
 * runs are left out; the seq bound is fixed when the job starts, so later sends are not in it.
 * Encrypted bodies are written as the client sent them (base64): the server never decrypts.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { BlobStore } from "../media/index.ts";
import type { RetentionPolicy } from "../retention/index.ts";
import { assembleExport, envelopeRecord, mediaEntries } from "./export-output.ts";
import type { JobFiles } from "./job-files.ts";
import type { JobKindHandler, JobPlan } from "./job-kind.ts";
import type { JobRow } from "./job-repository.ts";

export interface ConversationExportOptions {
  db: Kysely<Database>;
  files: JobFiles;
  blobs: BlobStore;
  retention: RetentionPolicy;
  /** Messages per chunk. */
  chunkMessages: number;
}

interface MessageExportRow {
  seq: string;
  id: string;
  sender_id: string;
  created_at: Date;
  edited_at: Date | null;
  deleted_at: Date | null;
  reply_to_seq: string | null;
  body_text: string | null;
  envelope_ciphertext: Uint8Array | null;
  envelope_nonce: Uint8Array | null;
  envelope_algorithm: string | null;
  envelope_key_id: string | null;
  envelope_key_epoch: string | null;
  story_id: string | null;
  story_author_id: string | null;
}

export class ConversationExport implements JobKindHandler {
  readonly #o: ConversationExportOptions;

  constructor(options: ConversationExportOptions) {
    this.#o = options;
  }

  /** Chunks over seq 1..last_seq now; the total counts the messages retained now. */
  async plan(conversationId: string): Promise<JobPlan> {
    const { db, retention, chunkMessages } = this.#o;
    const now = new Date();
    const row = (
      await sql<{ last_seq: string; n: string }>`
        select c.last_seq, (select count(*) from messages m where m.conversation_id = c.id and ${retention.at(now).retainedSql("m.created_at", "c")}) as n
        from conversations c where c.id = ${conversationId}`.execute(db)
    ).rows[0];
    const lastSeq = Number(row?.last_seq ?? 0);
    const chunks: Record<string, unknown>[] = [{ part: "header" }];
    for (let from = 1; from <= lastSeq; from += chunkMessages) chunks.push({ fromSeq: from, toSeq: Math.min(lastSeq, from + chunkMessages - 1) });
    return { params: { exportedAt: now.toISOString(), upToSeq: lastSeq }, chunks, itemsTotal: Number(row?.n ?? 0) };
  }

  async runChunk(job: JobRow, chunkNo: number, range: Record<string, unknown>): Promise<number> {
    const conversationId = job.conversation_id!;
    if (range.part === "header") {
      await this.#o.files.writePart(job.id, chunkNo, await this.#header(job, conversationId));
      return 0;
    }
    const records = await this.#messages(conversationId, Number(range.fromSeq), Number(range.toSeq));
    await this.#o.files.writePart(job.id, chunkNo, records);
    return records.length;
  }

  async finalize(job: JobRow, chunks: number) {
    const { db, retention, blobs, files } = this.#o;
    const conversationId = job.conversation_id!;
    return assembleExport(files, job, chunks, `conversation-${conversationId}`, async function* () {
      // The attachments of the conversation still retained: encrypted blobs, copied as stored.
      const rows = await sql<{ id: string }>`
        select a.id from media a join conversations c on c.id = a.conversation_id
        where a.conversation_id = ${conversationId} and ${retention.at(new Date()).retainedSql("a.created_at", "c")} order by a.id`.execute(db);
      yield* mediaEntries(blobs, rows.rows.map((r) => r.id));
    });
  }

  async #header(job: JobRow, conversationId: string): Promise<unknown[]> {
    const { db } = this.#o;
    const conversation = await db.selectFrom("conversations").selectAll().where("id", "=", conversationId).executeTakeFirst();
    if (!conversation) return [];
    const members = await db.selectFrom("conversation_members").select(["user_id", "role", "joined_at"]).where("conversation_id", "=", conversationId).orderBy("user_id").execute();
    return [
      {
        type: "conversation",
        id: conversation.id,
        name: conversation.name,
        kind: conversation.type === 1 ? "direct" : "group",
        encrypted: conversation.encrypted,
        created_at: conversation.created_at.toISOString(),
        exported_at: String(job.params.exportedAt ?? job.created_at.toISOString()),
      },
      ...members.map((m) => ({ type: "member", user_id: m.user_id, role: m.role === 2 ? "admin" : "member", joined_at: m.joined_at.toISOString() })),
    ];
  }

  async #messages(conversationId: string, fromSeq: number, toSeq: number): Promise<unknown[]> {
    const { db, retention } = this.#o;
    const cutoff = retention.at(new Date());
    const rows = (
      await sql<MessageExportRow>`
        select m.seq, m.id, m.sender_id, m.created_at, m.edited_at, m.deleted_at, m.reply_to_seq, m.body_text,
          m.envelope_ciphertext, m.envelope_nonce, m.envelope_algorithm, m.envelope_key_id, m.envelope_key_epoch, m.story_id, m.story_author_id
        from messages m join conversations c on c.id = m.conversation_id
        where m.conversation_id = ${conversationId} and m.seq between ${fromSeq} and ${toSeq} and ${cutoff.retainedSql("m.created_at", "c")}
        order by m.seq`.execute(db)
    ).rows;
    const reactions = new Map<string, Record<string, number>>();
    const counts = await sql<{ seq: string; emoji: string; count: string }>`
      select seq, emoji, count from message_reaction_counts
      where conversation_id = ${conversationId} and seq between ${fromSeq} and ${toSeq} and count > 0 order by seq, emoji`.execute(db);
    for (const r of counts.rows) {
      const byEmoji = reactions.get(String(r.seq)) ?? {};
      byEmoji[r.emoji] = Number(r.count);
      reactions.set(String(r.seq), byEmoji);
    }
    return rows.map((m) => messageRecord(m, m.deleted_at ? {} : (reactions.get(String(m.seq)) ?? {})));
  }
}

/** One message line. Deleted messages keep who/when only (their content is already erased). */
export function messageRecord(m: MessageExportRow, reactions: Record<string, number>): Record<string, unknown> {
  const envelope = envelopeRecord(m);
  return {
    type: "message",
    seq: Number(m.seq),
    id: m.id,
    sender_id: m.sender_id,
    created_at: m.created_at.toISOString(),
    edited_at: m.edited_at?.toISOString() ?? null,
    deleted: m.deleted_at !== null,
    reply_to_seq: m.reply_to_seq === null ? null : Number(m.reply_to_seq),
    ...(m.body_text !== null && { text: m.body_text }),
    ...(envelope && { envelope }),
    attachments: m.story_id ? [{ kind: "story", story_id: m.story_id, author_id: m.story_author_id }] : [],
    reactions,
  };
}

export type { MessageExportRow };
