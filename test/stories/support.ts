/**
 * What the story tests share: the media fixtures, servers with a data directory of their own
 * (so a test can look at the stored files), posting a story in one call, and where the server
 * keeps a story's rows and bytes.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { crc32 } from "node:zlib";
import type { Story } from "../../gen/parley/v1/story_pb.ts";
import type { StoryTrayEntry, StoryViewer } from "../../gen/parley/v1/story_service_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { Clients, TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { eventually } from "../helpers/feed.ts";

const fixtureDir = new URL("./fixtures/", import.meta.url);

/** The bytes of a file under test/stories/fixtures. */
export async function fixture(name: string): Promise<Uint8Array> {
  return new Uint8Array(await readFile(new URL(name, fixtureDir)));
}

/**
 * A valid PNG of exactly `size` bytes: the 1×1 fixture with a private ancillary chunk (which
 * decoders skip) holding the padding, so the file stays well-formed at any size ≥ 82.
 */
export async function pngOfSize(size: number): Promise<Uint8Array> {
  const base = Buffer.from(await fixture("pixel.png"));
  const iend = base.length - 12;
  const padding = size - base.length - 12;
  if (padding < 0) throw new Error(`a PNG cannot be smaller than ${base.length + 12} bytes`);
  const typed = Buffer.concat([Buffer.from("prVt", "latin1"), Buffer.alloc(padding, 0x2a)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(padding);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return new Uint8Array(Buffer.concat([base.subarray(0, iend), len, typed, crc, base.subarray(iend)]));
}

/** The privacy tiers, with names for test titles. */
export const TIERS = [
  { name: "PUBLIC", privacy: StoryPrivacy.PUBLIC },
  { name: "FOLLOWERS", privacy: StoryPrivacy.FOLLOWERS },
  { name: "CLOSE_FRIENDS", privacy: StoryPrivacy.CLOSE_FRIENDS },
] as const;

/** A server for story tests plus the directory it keeps its files (media) in. */
export interface StoryServer extends TestServer {
  readonly dataDir: string;
}

/**
 * A real-time node (real NATS with DATABASE_URL) whose DATA_DIR is a fresh temporary directory,
 * removed again on stop().
 */
export async function startStoryServer(overrides: Record<string, string | undefined> = {}): Promise<StoryServer> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "parley-stories-"));
  let server: TestServer;
  try {
    server = await startRealtimeServer({ DATA_DIR: dataDir, ...overrides });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  return {
    ...server,
    dataDir,
    async stop() {
      try {
        await server.stop();
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}

let shared: Promise<StoryServer> | undefined;

/**
 * One default story server shared by the test files that need no special settings, started on
 * first use and stopped after every file ran (a node on the embedded database takes seconds to
 * start). Tests on it use fresh users, so they never see each other's private stories.
 */
export function sharedStoryServer(): Promise<StoryServer> {
  shared ??= startStoryServer();
  return shared;
}

// Registered while mocha loads the first spec file importing this module: a root hook that
// runs after all files.
if (typeof after === "function") {
  after(async function () {
    this.timeout(20_000);
    const server = await shared?.catch(() => undefined);
    shared = undefined;
    await server?.stop();
  });
}

/** Uploads a fixture (the 1×1 PNG by default) and posts it as a story. */
export async function postStory(
  clients: Clients,
  privacy: StoryPrivacy,
  options: { caption?: string; file?: string } = {},
): Promise<Story> {
  const upload = await clients.media.uploadMedia({ data: await fixture(options.file ?? "pixel.png") });
  const res = await clients.stories.createStory({ mediaId: upload.media!.id, caption: options.caption ?? "", privacy });
  assert.ok(res.story, "CreateStory returned a story");
  return res.story;
}

/** Every file the blob store holds under <dataDir>/media (paths relative to it). */
export async function storedMediaFiles(dataDir: string): Promise<string[]> {
  const root = path.join(dataDir, "media");
  if (!existsSync(root)) return [];
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

/** Whether the blob store still holds a file for the media id. */
export async function mediaFileExists(dataDir: string, mediaId: string): Promise<boolean> {
  return (await storedMediaFiles(dataDir)).some((f) => path.basename(f) === mediaId || path.basename(f).startsWith(`${mediaId}.`));
}

/**
 * Rows that still mention the story in PostgreSQL (stories, views, reactions, its media row),
 * or null on the embedded database, which only the server itself can open.
 */
export async function storyRows(server: TestServer, story: Story): Promise<Record<string, number> | null> {
  const url = server.env.DATABASE_URL;
  if (!url) return null;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const count = async (sql: string, id: string) => Number((await client.query<{ n: string }>(sql, [id])).rows[0]!.n);
    return {
      stories: await count("select count(*) as n from stories where id = $1", story.id),
      story_views: await count("select count(*) as n from story_views where story_id = $1", story.id),
      story_reactions: await count("select count(*) as n from story_reactions where story_id = $1", story.id),
      story_reaction_counts: await count("select count(*) as n from story_reaction_counts where story_id = $1", story.id),
      media: await count("select count(*) as n from media where id = $1", story.media!.id),
    };
  } finally {
    await client.end();
  }
}

/**
 * Waits until nothing of the story is left: no media file and (in PostgreSQL mode) no rows.
 * Fails after the timeout saying what remained, naming who should have deleted it.
 */
export async function waitUntilErased(server: TestServer, dataDir: string, story: Story, by: string, timeoutMs: number): Promise<void> {
  let left = "";
  try {
    await eventually(async () => {
      const file = await mediaFileExists(dataDir, story.media!.id);
      const rows = await storyRows(server, story);
      const remaining = Object.entries(rows ?? {}).filter(([, n]) => n > 0).map(([table, n]) => `${n} in ${table}`);
      left = [...(file ? ["the media file"] : []), ...remaining].join(", ");
      return left === "";
    }, `the story erased by ${by}`, Math.max(timeoutMs, 1));
  } catch (err) {
    throw new Error(`${(err as Error).message}; left: ${left}`);
  }
}

/** Waits until the wall clock reaches the time (milliseconds since the epoch). */
export async function sleepUntil(epochMs: number): Promise<void> {
  for (let left = epochMs - Date.now(); left > 0; left = epochMs - Date.now()) {
    await new Promise((resolve) => setTimeout(resolve, left));
  }
}

/** One page of a list call: its items and the token of the next page ("" on the last). */
export interface Page<T> {
  items: T[];
  next: string;
}

/** Walks a paginated list from the first page to the last; returns the pages. */
export async function allPages<T>(fetch: (pageToken: string) => Promise<Page<T>>): Promise<T[][]> {
  const pages: T[][] = [];
  let token = "";
  for (let i = 0; i < 1000; i++) {
    const page = await fetch(token);
    pages.push(page.items);
    if (!page.next) return pages;
    token = page.next;
  }
  throw new Error("the list never stopped returning a next_page_token");
}

/** The caller's whole story tray, page by page. */
export function wholeTray(c: Clients, includePublic: boolean, pageSize = 100): Promise<StoryTrayEntry[][]> {
  return allPages(async (pageToken) => {
    const res = await c.stories.listStoryFeed({ includePublic, pageSize, pageToken });
    return { items: res.entries, next: res.nextPageToken };
  });
}

/** Everyone who viewed the story (the caller must be its author), page by page. */
export function viewerPages(c: Clients, storyId: string, pageSize: number): Promise<StoryViewer[][]> {
  return allPages(async (pageToken) => {
    const res = await c.stories.listStoryViewers({ storyId, pageSize, pageToken });
    return { items: res.viewers, next: res.nextPageToken };
  });
}

/** User ids of a social list, page by page. */
export const followersOf = (c: Clients, userId: string, pageSize = 200) =>
  allPages(async (pageToken) => {
    const r = await c.social.listFollowers({ userId, pageSize, pageToken });
    return { items: r.followers.map((e) => e.userId), next: r.nextPageToken };
  });
export const followingOf = (c: Clients, userId: string, pageSize = 200) =>
  allPages(async (pageToken) => {
    const r = await c.social.listFollowing({ userId, pageSize, pageToken });
    return { items: r.following.map((e) => e.userId), next: r.nextPageToken };
  });
export const closeFriendsOf = (c: Clients, pageSize = 200) =>
  allPages(async (pageToken) => {
    const r = await c.social.listCloseFriends({ pageSize, pageToken });
    return { items: r.closeFriends.map((e) => e.userId), next: r.nextPageToken };
  });
export const blockedBy = (c: Clients, pageSize = 200) =>
  allPages(async (pageToken) => {
    const r = await c.social.listBlocked({ pageSize, pageToken });
    return { items: r.blocked.map((e) => e.userId), next: r.nextPageToken };
  });
