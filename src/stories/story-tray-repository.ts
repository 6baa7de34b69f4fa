/**
 * The story tray's summary rows (migration 0016): per (author, tier) how many stories exist,
 * the newest one's time and the first and last deadlines (story_tray); per (viewer, author,
 * tier) how many of those the viewer has viewed (story_tray_views). Kept by the statements here,
 * which run inside the transactions that post, view and delete stories, so the tray sorts 500
 * followed authors by reading their summary rows instead of every story and view.
 *
 * The rows count stories that exist, expired or not; what is live is decided at read time with
 * the clock of the call: a tier whose first deadline has passed (an expired story the cleanup
 * has not deleted yet) is recomputed from its stories in the same query.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import type { Database } from "../db/schema.ts";
import { STORY_WITH_MEDIA, toStoryWithMedia, type StoryReactionRow, type StoryWithMedia, type StoryWithMediaRow } from "./story-repository.ts";

type Db = Kysely<Database> | Transaction<Database>;

/** A story as far as its tier's summary goes. */
export interface SummarizedStory {
  author_id: string;
  privacy: number;
  created_at: Date;
  expires_at: Date;
}

/** Adds a newly posted story to its (author, tier) row, creating it for the tier's first story. */
export async function addToTray(tx: Transaction<Database>, story: SummarizedStory): Promise<void> {
  await sql`
    insert into story_tray as t (author_id, privacy, story_count, newest_at, first_expires_at, last_expires_at)
    values (${story.author_id}, ${story.privacy}, 1, ${story.created_at}, ${story.expires_at}, ${story.expires_at})
    on conflict (author_id, privacy) do update set
      story_count = t.story_count + 1,
      newest_at = greatest(t.newest_at, excluded.newest_at),
      first_expires_at = least(t.first_expires_at, excluded.first_expires_at),
      last_expires_at = greatest(t.last_expires_at, excluded.last_expires_at)`.execute(tx);
}

/** Counts a viewer's first view of a story of (author, tier). */
export async function addTrayView(tx: Transaction<Database>, viewerId: string, authorId: string, privacy: number): Promise<void> {
  await sql`
    insert into story_tray_views as v (viewer_id, author_id, privacy, viewed_count) values (${viewerId}, ${authorId}, ${privacy}, 1)
    on conflict (viewer_id, author_id, privacy) do update set viewed_count = v.viewed_count + 1`.execute(tx);
}

/** A story row locked for deletion. */
export interface LockedStory {
  id: string;
  author_id: string;
  privacy: number;
}

/**
 * Deletes the stories with their views, reactions and their share of the summary rows; returns
 * the ids it deleted. Three statements, in this order for a reason:
 * 1. lock the stories (no view can be added to them any more: views hold them FOR KEY SHARE),
 * 2. then their tiers' rows (a concurrent post of the same tier waits to add itself to what
 *    step 3 writes), each in one global order so two deleters cannot deadlock;
 * 3. in one snapshot taken after the locks (so it sees every view of them and every story of
 *    their tiers committed before): take each viewer's views of them out of story_tray_views,
 *    delete them (views, reactions and counts cascade), and recompute their tiers' rows from
 *    the stories left. View counts that reach zero stay until the sweep drops them
 *    (deleteZeroTrayViews): deleting them here could race a concurrent view of another story.
 */
export async function deleteStoriesAndTray(tx: Transaction<Database>, storyIds: readonly string[]): Promise<string[]> {
  if (storyIds.length === 0) return [];
  const locked = await sql<LockedStory>`
    select id, author_id, privacy from stories where id = any(${[...storyIds]}::uuid[])
    order by author_id, privacy, id for update`.execute(tx);
  if (locked.rows.length === 0) return [];
  const ids = locked.rows.map((r) => r.id);
  const tiers = [...new Map(locked.rows.map((r) => [`${r.privacy}:${r.author_id}`, r])).values()];
  const authors = tiers.map((t) => t.author_id);
  const privacies = tiers.map((t) => t.privacy);
  await sql`
    select 1 from story_tray
    where (author_id, privacy) in (select * from unnest(${authors}::text[], ${privacies}::int2[]))
    order by author_id, privacy for update`.execute(tx);
  await sql`
    with tiers(author_id, privacy) as (select * from unnest(${authors}::text[], ${privacies}::int2[])),
    seen as (
      select v.viewer_id, s.author_id, s.privacy, count(*)::int as n
      from story_views v join stories s on s.id = v.story_id
      where v.story_id = any(${ids}::uuid[])
      group by v.viewer_id, s.author_id, s.privacy),
    uncounted as (
      update story_tray_views tv set viewed_count = tv.viewed_count - seen.n from seen
      where tv.viewer_id = seen.viewer_id and tv.author_id = seen.author_id and tv.privacy = seen.privacy),
    deleted as (delete from stories where id = any(${ids}::uuid[])),
    left_over as (
      select s.author_id, s.privacy, count(*)::int as n, max(s.created_at) as newest_at,
             min(s.expires_at) as first_expires_at, max(s.expires_at) as last_expires_at
      from tiers join stories s on s.author_id = tiers.author_id and s.privacy = tiers.privacy
      where s.id <> all(${ids}::uuid[]) -- the statement's snapshot still shows the deleted ones
      group by s.author_id, s.privacy),
    emptied as (
      delete from story_tray t using tiers
      where t.author_id = tiers.author_id and t.privacy = tiers.privacy
        and not exists (select 1 from left_over l where l.author_id = t.author_id and l.privacy = t.privacy))
    insert into story_tray as t (author_id, privacy, story_count, newest_at, first_expires_at, last_expires_at)
    select author_id, privacy, n, newest_at, first_expires_at, last_expires_at from left_over
    on conflict (author_id, privacy) do update set
      story_count = excluded.story_count, newest_at = excluded.newest_at,
      first_expires_at = excluded.first_expires_at, last_expires_at = excluded.last_expires_at`.execute(tx);
  return ids;
}

/** Drops view counts that deletions brought to zero (the sweep's housekeeping; a small partial index finds them). */
export async function deleteZeroTrayViews(db: Db): Promise<number> {
  const result = await sql`delete from story_tray_views where viewed_count = 0`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/** Forgets every view count of the viewer (account erasure takes back all their views). */
export async function deleteTrayViewsBy(tx: Transaction<Database>, viewerId: string): Promise<void> {
  await sql`delete from story_tray_views where viewer_id = ${viewerId}`.execute(tx);
}

/** One author in the tray. */
export interface TrayAuthorRow {
  author_id: string;
  latest_at: Date;
  latest_micros: string;
  has_unseen: boolean;
}

/** A story of a tray page, as the viewer sees it. */
export interface TrayStory extends StoryWithMedia {
  seen: boolean;
  reactions: StoryReactionRow[];
}

/** One page of the tray: up to `limit` + 1 authors (the extra one says there is a next page), and the first `limit` authors' stories, oldest first. */
export interface TrayPage {
  authors: TrayAuthorRow[];
  stories: Map<string, TrayStory[]>;
}

/** Where a tray page ends: sort group (0 unseen, 1 seen), newest story, author. */
export interface TrayPosition {
  group: number;
  micros: string;
  authorId: string;
}

interface TrayPageRow extends Partial<StoryWithMediaRow> {
  page_author_id: string;
  latest_at: Date;
  latest_micros: string;
  has_unseen: boolean;
  rank: string;
  seen: boolean;
  /** [emoji, count, reacted by the viewer], most used first. */
  reactions: [string, string, boolean][] | null;
}

/**
 * One page of the viewer's tray with its stories, in one statement: the candidate authors
 * (followed, having the viewer as a close friend and, with includePublic, any author with a
 * live PUBLIC story) with the tiers the privacy rule lets the viewer see (`maskByRelation`, the
 * rule as a table indexed by blocked·4 + close friend·2 + follower, computed from
 * story-privacy.ts by the caller); their visible tiers' summary rows, unseen first, then newest
 * story first, then author id; and the page's stories with media, seen flags and reactions.
 * A tier is unseen when the viewer viewed fewer of its stories than it has.
 *
 * Expiry is exact: a tier whose every story is past its deadline is skipped, and one whose
 * first deadline has passed (the cleanup has not deleted that story yet) is recomputed from
 * its live stories and the viewer's views of them — a handful of rows, and rare: expiry
 * deletes a story within a fraction of a second of its deadline.
 */
export async function listTrayPage(
  db: Db,
  viewerId: string,
  maskByRelation: readonly number[],
  includePublic: boolean,
  now: Date,
  after: TrayPosition | null,
  limit: number,
): Promise<TrayPage> {
  const afterSql = after === null ? sql`true` : sql`
    (a.grp, -a.latest_micros, a.author_id) > (${after.group}, -${after.micros}::int8, ${after.authorId})`;
  // Not a prepared statement (src/db/prepared-statements.ts): PostgreSQL's generic plan for it
  // made the first page three times slower than planning it on every call (bench:stories).
  // The viewer's view counts are read once (one index range) and hashed: probing them once per
  // (author, tier) cost more than everything else in the sort.
  const result = await sql<TrayPageRow>`
    with edges(id, follower, close_friend) as (
      select followee_id, true, false from follows where follower_id = ${viewerId}
      union all select owner_id, false, true from close_friends where friend_id = ${viewerId}
      union all select author_id, false, false from story_tray
        where ${includePublic} and privacy = 1 and last_expires_at > ${now} and author_id <> ${viewerId}),
    blocked(id) as (
      select blocked_id from blocks where blocker_id = ${viewerId}
      union select blocker_id from blocks where blocked_id = ${viewerId}),
    candidates as (
      select id as author_id,
        (${[...maskByRelation]}::int4[])[1 + (case when id in (select id from blocked) then 4 else 0 end)
          + (case when bool_or(close_friend) then 2 else 0 end) + (case when bool_or(follower) then 1 else 0 end)] as mask
      from edges group by id),
    viewed as materialized (
      select author_id, privacy, viewed_count from story_tray_views where viewer_id = ${viewerId}),
    tiers as (
      select c.author_id, c.mask,
        case when t.first_expires_at > ${now} then t.newest_at else live.newest_at end as newest_at,
        case when t.first_expires_at > ${now} then t.story_count > coalesce(v.viewed_count, 0) else live.unseen end as unseen
      from candidates c
      join story_tray t on t.author_id = c.author_id and (c.mask >> t.privacy) & 1 = 1 and t.last_expires_at > ${now}
      left join viewed v on v.author_id = t.author_id and v.privacy = t.privacy
      left join lateral (
        select max(s.created_at) as newest_at,
          bool_or(not exists (select 1 from story_views sv where sv.story_id = s.id and sv.viewer_id = ${viewerId})) as unseen
        from stories s
        where t.first_expires_at <= ${now} and s.author_id = t.author_id and s.privacy = t.privacy and s.expires_at > ${now}) live on true),
    authors as (
      select author_id, min(mask) as mask, max(newest_at) as latest_at,
        (extract(epoch from max(newest_at)) * 1000000)::int8 as latest_micros,
        coalesce(bool_or(unseen), false) as has_unseen,
        case when coalesce(bool_or(unseen), false) then 0 else 1 end as grp
      from tiers where newest_at is not null
      group by author_id),
    page as materialized (
      select a.author_id, a.mask, a.latest_at, a.latest_micros, a.has_unseen,
        row_number() over (order by a.grp, a.latest_micros desc, a.author_id) as rank
      from authors a
      where ${afterSql}
      order by a.grp, a.latest_micros desc, a.author_id
      limit ${limit + 1})
    select p.author_id as page_author_id, p.latest_at, p.latest_micros::text, p.has_unseen, p.rank, st.*,
      sv.story_id is not null as seen,
      (select json_agg(json_build_array(rc.emoji, rc.count::text,
                exists (select 1 from story_reactions r where r.story_id = rc.story_id and r.emoji = rc.emoji and r.user_id = ${viewerId}))
              order by rc.count desc, rc.emoji collate "C")
       from story_reaction_counts rc where rc.story_id = st.id and rc.count > 0) as reactions
    from page p
    left join lateral (
      select ${STORY_WITH_MEDIA} from stories s join media m on m.id = s.media_id
      where p.rank <= ${limit} and s.author_id = p.author_id and s.expires_at > ${now} and (p.mask >> s.privacy) & 1 = 1) st on true
    left join story_views sv on sv.story_id = st.id and sv.viewer_id = ${viewerId}
    order by p.rank, st.created_at, st.id`.execute(db);

  const authors: TrayAuthorRow[] = [];
  const stories = new Map<string, TrayStory[]>();
  for (const row of result.rows) {
    const { page_author_id, latest_at, latest_micros, has_unseen, rank, seen, reactions, ...story } = row;
    if (authors.at(-1)?.author_id !== page_author_id) authors.push({ author_id: page_author_id, latest_at, latest_micros, has_unseen });
    if (story.id == null) continue;
    let list = stories.get(page_author_id);
    if (!list) stories.set(page_author_id, (list = []));
    list.push({
      ...toStoryWithMedia(story as StoryWithMediaRow),
      seen,
      reactions: (reactions ?? []).map(([emoji, count, mine]) => ({ story_id: story.id!, emoji, count, reacted_by_me: mine })),
    });
  }
  return { authors, stories };
}
