/**
 * Every SQL statement about stories, their views and reactions. Reads take the clock as a
 * parameter and filter `expires_at > now` themselves, so no query can return an expired story
 * whatever the expiry consumer has or has not deleted yet.
 */
import { sql, type Insertable, type Kysely, type RawBuilder, type Selectable, type Transaction } from "kysely";
import type { Database, StoriesTable } from "../db/schema.ts";
import { microsOf, olderThan } from "../db/keyset.ts";
import type { MediaRow } from "../media/index.ts";
import type { RelationFlags } from "./story-privacy.ts";
import { addToTray, addTrayView, deleteStoriesAndTray, deleteTrayViewsBy } from "./story-tray-repository.ts";

type Db = Kysely<Database> | Transaction<Database>;

export type StoryRow = Selectable<StoriesTable>;

/** A story with its media object, as every read returns it. */
export interface StoryWithMedia {
  story: StoryRow;
  media: MediaRow;
}

/** The stored relation of the user `viewer` to the user `author` (two SQL expressions). */
function relationFlagsSql(viewer: RawBuilder<string> | string, author: RawBuilder<string>) {
  return sql`
    exists (select 1 from follows f where f.follower_id = ${viewer} and f.followee_id = ${author}) as follower,
    exists (select 1 from close_friends cf where cf.owner_id = ${author} and cf.friend_id = ${viewer}) as close_friend,
    exists (select 1 from blocks b where (b.blocker_id = ${author} and b.blocked_id = ${viewer})
                                      or (b.blocker_id = ${viewer} and b.blocked_id = ${author})) as blocked`;
}

interface FlagsRow {
  user_id: string;
  follower: boolean;
  close_friend: boolean;
  blocked: boolean;
}

function toFlags(row: FlagsRow, isAuthor: boolean): RelationFlags {
  return { isAuthor, blocked: row.blocked, closeFriend: row.close_friend, follower: row.follower };
}

/** The viewer's relation to each author, keyed by author id. */
export async function findRelations(db: Db, viewerId: string, authorIds: readonly string[]): Promise<Map<string, RelationFlags>> {
  if (authorIds.length === 0) return new Map();
  const result = await sql<FlagsRow>`
    select a.id as user_id, ${relationFlagsSql(viewerId, sql.ref("a.id"))}
    from unnest(${[...new Set(authorIds)]}::text[]) as a(id)`.execute(db);
  return new Map(result.rows.map((row) => [row.user_id, toFlags(row, row.user_id === viewerId)]));
}

/** The users a new story of the author may be announced to (followers and close friends), with their relation to the author. */
export async function findAudienceCandidates(db: Db, authorId: string): Promise<Map<string, RelationFlags>> {
  const result = await sql<FlagsRow>`
    with candidates(id) as (
      select follower_id from follows where followee_id = ${authorId}
      union select friend_id from close_friends where owner_id = ${authorId})
    select c.id as user_id, ${relationFlagsSql(sql.ref("c.id"), sql.val(authorId))} from candidates c`.execute(db);
  return new Map(result.rows.map((row) => [row.user_id, toFlags(row, false)]));
}

/** The columns of a story with its media (m_*), for toStoryWithMedia. */
export const STORY_WITH_MEDIA = sql`
  s.id, s.author_id, s.media_id, s.caption, s.privacy, s.created_at, s.expires_at, s.view_count,
  m.owner_id as m_owner_id, m.type as m_type, m.content_type as m_content_type, m.size_bytes as m_size_bytes,
  m.created_at as m_created_at`;

export interface StoryWithMediaRow extends StoryRow {
  m_owner_id: string;
  m_type: number;
  m_content_type: string;
  m_size_bytes: string;
  m_created_at: Date;
}

export function toStoryWithMedia(row: StoryWithMediaRow): StoryWithMedia {
  const { m_owner_id, m_type, m_content_type, m_size_bytes, m_created_at, ...story } = row;
  return {
    story,
    media: { id: story.media_id, owner_id: m_owner_id, type: m_type, content_type: m_content_type, size_bytes: m_size_bytes, created_at: m_created_at, conversation_id: null },
  };
}

/** A live story by id, with its media. */
export async function findLiveStory(db: Db, storyId: string, now: Date): Promise<StoryWithMedia | undefined> {
  const result = await sql<StoryWithMediaRow>`
    select ${STORY_WITH_MEDIA} from stories s join media m on m.id = s.media_id
    where s.id = ${storyId} and s.expires_at > ${now}`.execute(db);
  return result.rows[0] && toStoryWithMedia(result.rows[0]);
}

/** The story (live or not yet deleted) that shows a media object. */
export async function findStoryByMedia(db: Db, mediaId: string): Promise<StoryRow | undefined> {
  return db.selectFrom("stories").selectAll().where("media_id", "=", mediaId).executeTakeFirst();
}

/** Bit i set ⇔ privacy tier i visible: how per-author visibility travels into one query. */
export function tierMask(tiers: readonly number[]): number {
  return tiers.reduce((mask, tier) => mask | (1 << tier), 0);
}

/** For each (author, tier mask): their live stories in those tiers, oldest first per author, with whether the viewer saw each. */
export async function listVisibleStories(db: Db, viewerId: string, masks: ReadonlyMap<string, number>, now: Date): Promise<(StoryWithMedia & { seen: boolean })[]> {
  if (masks.size === 0) return [];
  const result = await sql<StoryWithMediaRow & { seen: boolean }>`
    select ${STORY_WITH_MEDIA}, (s.author_id = ${viewerId} or v.story_id is not null) as seen
    from unnest(${[...masks.keys()]}::text[], ${[...masks.values()]}::int4[]) as k(author_id, mask)
    join stories s on s.author_id = k.author_id and s.expires_at > ${now} and (k.mask >> s.privacy) & 1 = 1
    join media m on m.id = s.media_id
    left join story_views v on v.story_id = s.id and v.viewer_id = ${viewerId}
    where s.author_id = any(${[...masks.keys()]}::text[]) -- lets the planner use stories_by_author
    order by s.author_id, s.created_at, s.id`.execute(db);
  return result.rows.map((row) => ({ ...toStoryWithMedia(row), seen: row.seen }));
}

/**
 * Locks the story against deletion until commit (FOR KEY SHARE: a concurrent DeleteStory or
 * expiry waits, views and reactions do not), so the rows written next can reference it.
 * Returns its author and tier (what the tray's view counts are kept by), or undefined when it
 * is already gone.
 */
async function holdStory(tx: Transaction<Database>, storyId: string): Promise<{ author_id: string; privacy: number } | undefined> {
  const result = await sql<{ author_id: string; privacy: number }>`select author_id, privacy from stories where id = ${storyId} for key share`.execute(tx);
  return result.rows[0];
}

/**
 * Records a view. Returns whether it was the viewer's first (which bumps the story's count and
 * the viewer's count for the tray) and the count after it, or null when the story is gone
 * (deleted since it was checked).
 */
export async function recordView(tx: Transaction<Database>, storyId: string, viewerId: string, at: Date): Promise<{ first: boolean; viewCount: bigint } | null> {
  const story = await holdStory(tx, storyId);
  if (!story) return null;
  const inserted = await sql`
    insert into story_views (story_id, viewer_id, viewed_at) values (${storyId}, ${viewerId}, ${at}) on conflict do nothing`.execute(tx);
  const first = Number(inserted.numAffectedRows ?? 0) > 0;
  if (first) await addTrayView(tx, viewerId, story.author_id, story.privacy);
  const row = first
    ? await tx.updateTable("stories").set({ view_count: sql`view_count + 1` }).where("id", "=", storyId).returning("view_count").executeTakeFirstOrThrow()
    : await tx.selectFrom("stories").select("view_count").where("id", "=", storyId).executeTakeFirstOrThrow();
  return { first, viewCount: BigInt(row.view_count) };
}

/** Which of the stories the viewer has viewed. */
export async function findSeen(db: Db, viewerId: string, storyIds: readonly string[]): Promise<Set<string>> {
  if (storyIds.length === 0) return new Set();
  const rows = await db.selectFrom("story_views").select("story_id").where("viewer_id", "=", viewerId).where("story_id", "in", storyIds).execute();
  return new Set(rows.map((r) => r.story_id));
}

export interface ViewerRow {
  viewer_id: string;
  viewed_at: Date;
  micros: string;
}

/** A page of a story's viewers, newest first. */
export async function listViewers(db: Db, storyId: string, after: { micros: string; id: string } | null, limit: number): Promise<ViewerRow[]> {
  const result = await sql<ViewerRow>`
    select viewer_id, viewed_at, ${microsOf("viewed_at")} as micros from story_views
    where story_id = ${storyId} and ${olderThan("viewed_at", "viewer_id", after)}
    order by viewed_at desc, viewer_id desc
    limit ${limit}`.execute(db);
  return result.rows;
}

/**
 * Adds or takes back one reaction; returns whether it changed anything and the emoji's count
 * after, or null when the story is gone (deleted since it was checked).
 */
export async function changeReaction(tx: Transaction<Database>, op: "add" | "remove", storyId: string, emoji: string, userId: string): Promise<{ changed: boolean; count: bigint } | null> {
  if (!(await holdStory(tx, storyId))) return null;
  const changed =
    op === "add"
      ? await sql`insert into story_reactions (story_id, emoji, user_id) values (${storyId}, ${emoji}, ${userId}) on conflict do nothing`.execute(tx)
      : await sql`delete from story_reactions where story_id = ${storyId} and emoji = ${emoji} and user_id = ${userId}`.execute(tx);
  const delta = Number(changed.numAffectedRows ?? 0) * (op === "add" ? 1 : -1);
  const result = await sql<{ count: string }>`
    insert into story_reaction_counts as rc (story_id, emoji, count) values (${storyId}, ${emoji}, ${Math.max(delta, 0)})
    on conflict (story_id, emoji) do update set count = rc.count + ${delta}
    returning count`.execute(tx);
  return { changed: delta !== 0, count: BigInt(result.rows[0]!.count) };
}

/** Posts a story unless one already shows this media (a retried create), counting it in its tier's tray row; returns it, or null then. */
export async function insertStoryIfNew(tx: Transaction<Database>, row: Insertable<StoriesTable>): Promise<StoryRow | null> {
  const inserted = await tx.insertInto("stories").values(row).onConflict((oc) => oc.column("media_id").doNothing()).returningAll().executeTakeFirst();
  if (inserted) await addToTray(tx, inserted);
  return inserted ?? null;
}

export interface StoryReactionRow {
  story_id: string;
  emoji: string;
  count: string;
  reacted_by_me: boolean;
}

/** The reactions of each story (count > 0, most used first, then by emoji code points), as the viewer sees them. */
export async function findStoryReactions(db: Db, storyIds: readonly string[], viewerId: string): Promise<StoryReactionRow[]> {
  if (storyIds.length === 0) return [];
  const result = await sql<StoryReactionRow>`
    select rc.story_id, rc.emoji, rc.count,
      exists (select 1 from story_reactions r where r.story_id = rc.story_id and r.emoji = rc.emoji and r.user_id = ${viewerId}) as reacted_by_me
    from story_reaction_counts rc
    where rc.story_id = any(${[...storyIds]}::uuid[]) and rc.count > 0
    order by rc.story_id, rc.count desc, rc.emoji collate "C"`.execute(db);
  return result.rows;
}

/** A story about to be deleted: what the deletion must clean up and whom it tells. */
export interface DoomedStory {
  id: string;
  author_id: string;
  media_id: string;
  privacy: number;
  expires_at: Date;
}

const DOOMED_COLUMNS = ["id", "author_id", "media_id", "privacy", "expires_at"] as const;

/** The stories with these ids that still exist. */
export async function findDoomed(db: Db, storyIds: readonly string[]): Promise<DoomedStory[]> {
  if (storyIds.length === 0) return [];
  return db.selectFrom("stories").select(DOOMED_COLUMNS).where("id", "in", storyIds).execute();
}

/** Up to `limit` stories past their deadline (the sweep's work). */
export async function findExpired(db: Db, now: Date, limit: number): Promise<DoomedStory[]> {
  return db
    .selectFrom("stories")
    .select(DOOMED_COLUMNS)
    .where("expires_at", "<=", now)
    .orderBy("expires_at")
    .limit(limit)
    .execute();
}

/** Deletes the stories (their views, reactions, counts and tray summary go with them) and returns those it deleted. */
export async function deleteStories(tx: Transaction<Database>, storyIds: readonly string[]): Promise<string[]> {
  return deleteStoriesAndTray(tx, storyIds);
}

/** Up to `limit` of the author's stories, live or not yet deleted (account erasure). */
export async function findStoriesOf(db: Db, authorId: string, limit: number): Promise<DoomedStory[]> {
  return db.selectFrom("stories").select(DOOMED_COLUMNS).where("author_id", "=", authorId).limit(limit).execute();
}

/** Takes back every view the user made, each story's view count and the user's tray counts with it (account erasure). */
export async function deleteViewsBy(tx: Transaction<Database>, viewerId: string): Promise<void> {
  await deleteTrayViewsBy(tx, viewerId);
  await sql`
    with gone as (delete from story_views where viewer_id = ${viewerId} returning story_id)
    update stories s set view_count = s.view_count - g.n
    from (select story_id, count(*) as n from gone group by story_id) g
    where s.id = g.story_id`.execute(tx);
}

/** A reaction taken back, with the emoji's count after it and the story's author (whom it is told to). */
export interface RemovedStoryReaction {
  story_id: string;
  author_id: string;
  emoji: string;
  count: string;
}

/** Takes back every reaction the user made to a story, the counts with them (account erasure). */
export async function deleteReactionsBy(tx: Transaction<Database>, userId: string): Promise<RemovedStoryReaction[]> {
  const result = await sql<RemovedStoryReaction>`
    with gone as (delete from story_reactions where user_id = ${userId} returning story_id, emoji),
    counted as (
      update story_reaction_counts rc set count = rc.count - 1 from gone g
      where rc.story_id = g.story_id and rc.emoji = g.emoji
      returning rc.story_id, rc.emoji, rc.count)
    select c.story_id, s.author_id, c.emoji, c.count from counted c join stories s on s.id = c.story_id`.execute(tx);
  return result.rows;
}
