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
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import type { Clients, TestServer } from "../helpers/test-server.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";

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

/** Waits until the wall clock reaches the time (milliseconds since the epoch). */
export async function sleepUntil(epochMs: number): Promise<void> {
  for (let left = epochMs - Date.now(); left > 0; left = epochMs - Date.now()) {
    await new Promise((resolve) => setTimeout(resolve, left));
  }
}
