/**
 * All of one user's own data as JSON Lines, one chunk per section. Every query is keyed by the
 * user as the actor (sender, reactor, author, follower, owner, reporter, recipient), so nothing
 * of anyone else's is read: no message of others, no one else's reactions or stories, and of a
 * report only what the reporter wrote (not the reported content's snapshot).
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../db/schema.ts";
import type { BlobStore } from "../media/index.ts";
import type { RetentionPolicy } from "../retention/index.ts";
import { messageRecord, type MessageExportRow } from "./conversation-export.ts";
import { assembleExport, mediaEntries } from "./export-output.ts";
import type { JobFiles } from "./job-files.ts";
import type { JobKindHandler, JobPlan } from "./job-kind.ts";
import type { JobRow } from "./job-repository.ts";

export interface UserDataExportOptions {
  db: Kysely<Database>;
  files: JobFiles;
  blobs: BlobStore;
  retention: RetentionPolicy;
}

type Section = (userId: string) => Promise<Record<string, unknown>[]>;

const iso = (d: Date | null) => d?.toISOString() ?? null;
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

export class UserDataExport implements JobKindHandler {
  readonly #o: UserDataExportOptions;
  readonly #sections: ReadonlyMap<string, Section>;

  constructor(options: UserDataExportOptions) {
    this.#o = options;
    const { db } = options;
    this.#sections = new Map<string, Section>([
      ["profile", async (u) => (await db.selectFrom("users").selectAll().where("id", "=", u).execute()).map((r) => ({ type: "profile", id: r.id, display_name: r.display_name, avatar_media_id: r.avatar_media_id, created_at: iso(r.created_at), last_seen_at: iso(r.last_seen_at) }))],
      ["memberships", (u) => this.#memberships(u)],
      ["messages", (u) => this.#messages(u)],
      ["reactions", (u) => this.#reactions(u)],
      ["stories", async (u) => (await db.selectFrom("stories").selectAll().where("author_id", "=", u).orderBy("created_at").execute()).map((s) => ({ type: "story", id: s.id, media_id: s.media_id, caption: s.caption, privacy: s.privacy, created_at: iso(s.created_at), expires_at: iso(s.expires_at), view_count: Number(s.view_count) }))],
      ["social", (u) => this.#social(u)],
      ["devices", async (u) => (await db.selectFrom("devices").selectAll().where("user_id", "=", u).orderBy("created_at").execute()).map((d) => ({ type: "device", id: d.id, display_name: d.display_name, signing_public_key: b64(d.signing_public_key), box_public_key: b64(d.box_public_key), created_at: iso(d.created_at), revoked_at: iso(d.revoked_at) }))],
      ["settings", (u) => this.#settings(u)],
      ["reports", async (u) => (await db.selectFrom("reports").select(["id", "reported_user_id", "target_kind", "conversation_id", "message_seq", "story_id", "target_user_id", "reason", "note", "status", "created_at", "resolved_at"]).where("reporter_id", "=", u).orderBy("created_at").execute()).map((r) => ({ type: "report", ...r, message_seq: r.message_seq === null ? null : Number(r.message_seq), created_at: iso(r.created_at), resolved_at: iso(r.resolved_at) }))],
      ["notifications", async (u) => (await db.selectFrom("notifications").select(["id", "kind", "conversation_id", "actor_id", "message_seq", "created_at", "read_at"]).where("user_id", "=", u).orderBy("created_at").execute()).map((n) => ({ type: "notification", ...n, message_seq: Number(n.message_seq), created_at: iso(n.created_at), read_at: iso(n.read_at) }))],
    ]);
  }

  /** One chunk per section; a section is one item. */
  plan(): JobPlan {
    return { params: { exportedAt: new Date().toISOString() }, chunks: [...this.#sections.keys()].map((section) => ({ section })), itemsTotal: this.#sections.size };
  }

  async runChunk(job: JobRow, chunkNo: number, range: Record<string, unknown>): Promise<number> {
    const section = this.#sections.get(String(range.section));
    if (!section) throw new Error(`unknown export section ${String(range.section)}`);
    const records = await section(job.owner_id);
    const header = chunkNo === 0 ? [{ type: "export", user_id: job.owner_id, exported_at: String(job.params.exportedAt ?? "") }] : [];
    await this.#o.files.writePart(job.id, chunkNo, [...header, ...records]);
    return 1;
  }

  async finalize(job: JobRow, chunks: number) {
    const { db, blobs, files } = this.#o;
    return assembleExport(files, job, chunks, `my-data-${job.owner_id.replace(/[^A-Za-z0-9_-]/g, "_")}`, async function* () {
      const rows = await db.selectFrom("media").select("id").where("owner_id", "=", job.owner_id).orderBy("id").execute();
      yield* mediaEntries(blobs, rows.map((r) => r.id));
    });
  }

  /** Notification settings per conversation, and the email digest settings (1 OFF, 2 HOURLY, 3 DAILY). */
  async #settings(userId: string) {
    const { db } = this.#o;
    const perConversation = await db.selectFrom("notification_settings").selectAll().where("user_id", "=", userId).orderBy("conversation_id").execute();
    const email = await db.selectFrom("email_digest_settings").select(["email_address", "frequency", "last_sent_at"]).where("user_id", "=", userId).execute();
    return [
      ...perConversation.map((s) => ({ type: "notification_setting", conversation_id: s.conversation_id, level: s.level, muted_until: iso(s.muted_until) })),
      ...email.map((e) => ({ type: "email_digest_setting", email_address: e.email_address, frequency: e.frequency, last_sent_at: iso(e.last_sent_at) })),
    ];
  }

  async #memberships(userId: string) {
    const rows = await this.#o.db
      .selectFrom("conversation_members as m")
      .innerJoin("conversations as c", "c.id", "m.conversation_id")
      .select(["m.conversation_id", "c.name", "c.type", "m.role", "m.joined_at", "m.last_read_seq"])
      .where("m.user_id", "=", userId)
      .orderBy("m.conversation_id")
      .execute();
    return rows.map((r) => ({ type: "membership", conversation_id: r.conversation_id, conversation_name: r.name, kind: r.type === 1 ? "direct" : "group", role: r.role === 2 ? "admin" : "member", joined_at: iso(r.joined_at), last_read_seq: Number(r.last_read_seq) }));
  }

  /** The messages they sent and still retained (reaction counts are others' acts: left out). */
  async #messages(userId: string) {
    const cutoff = this.#o.retention.at(new Date());
    const rows = await sql<MessageExportRow & { conversation_id: string }>`
      select m.conversation_id, m.seq, m.id, m.sender_id, m.created_at, m.edited_at, m.deleted_at, m.reply_to_seq, m.body_text,
        m.envelope_ciphertext, m.envelope_nonce, m.envelope_algorithm, m.envelope_key_id, m.envelope_key_epoch, m.story_id, m.story_author_id
      from messages m join conversations c on c.id = m.conversation_id
      where m.sender_id = ${userId} and ${cutoff.retainedSql("m.created_at", "c")}
      order by m.conversation_id, m.seq`.execute(this.#o.db);
    return rows.rows.map((m) => {
      const { reactions: _ignored, ...record } = messageRecord(m, {});
      return { ...record, conversation_id: m.conversation_id };
    });
  }

  async #reactions(userId: string) {
    const { db } = this.#o;
    const onMessages = await db.selectFrom("message_reactions").selectAll().where("user_id", "=", userId).orderBy("created_at").execute();
    const onStories = await db.selectFrom("story_reactions").selectAll().where("user_id", "=", userId).orderBy("created_at").execute();
    return [
      ...onMessages.map((r) => ({ type: "message_reaction", conversation_id: r.conversation_id, seq: Number(r.seq), emoji: r.emoji, created_at: iso(r.created_at) })),
      ...onStories.map((r) => ({ type: "story_reaction", story_id: r.story_id, emoji: r.emoji, created_at: iso(r.created_at) })),
    ];
  }

  async #social(userId: string) {
    const { db } = this.#o;
    const follows = await db.selectFrom("follows").selectAll().where("follower_id", "=", userId).orderBy("created_at").execute();
    const friends = await db.selectFrom("close_friends").selectAll().where("owner_id", "=", userId).orderBy("created_at").execute();
    const blocks = await db.selectFrom("blocks").selectAll().where("blocker_id", "=", userId).orderBy("created_at").execute();
    return [
      ...follows.map((f) => ({ type: "follow", user_id: f.followee_id, created_at: iso(f.created_at) })),
      ...friends.map((f) => ({ type: "close_friend", user_id: f.friend_id, created_at: iso(f.created_at) })),
      ...blocks.map((b) => ({ type: "block", user_id: b.blocked_id, created_at: iso(b.created_at) })),
    ];
  }
}
