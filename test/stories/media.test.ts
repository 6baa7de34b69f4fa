/**
 * Issue 6, "MediaService": the type comes from the bytes (JPEG, PNG, GIF, WebP, MP4, MOV), never
 * from the client; other files and files whose declared type does not match are INVALID_ARGUMENT
 * and leave nothing behind; uploads are limited in size (10 MiB by default); only the owner, or
 * someone who may see a story using the media, can download it.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { MediaType } from "../../gen/parley/v1/media_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { ms } from "../helpers/fixtures.ts";
import { fixture, mediaFileExists, pngOfSize, sharedStoryServer, startStoryServer, storedMediaFiles, TIERS, type StoryServer } from "./support.ts";

const REAL_FILES = [
  { file: "pixel.jpg", type: MediaType.JPEG, mime: "image/jpeg" },
  { file: "pixel.png", type: MediaType.PNG, mime: "image/png" },
  { file: "pixel.gif", type: MediaType.GIF, mime: "image/gif" },
  { file: "pixel.webp", type: MediaType.WEBP, mime: "image/webp" },
  { file: "clip.mp4", type: MediaType.MP4, mime: "video/mp4" },
  { file: "clip.mov", type: MediaType.QUICKTIME, mime: "video/quicktime" },
] as const;

/** Files that are none of the accepted types, whatever they claim. */
const NOT_MEDIA = [
  { file: "notes.txt", what: "plain text" },
  { file: "page.html.jpg", what: "HTML named .jpg" },
  { file: "random.bin", what: "random bytes" },
  { file: "document.pdf", what: "a PDF" },
  { file: "image.heic", what: "an HEIC image (ISO media, but not a video brand)" },
  { file: "script.png", what: "a PNG signature followed by HTML" },
  { file: "script.gif", what: "a GIF signature followed by HTML" },
  { file: "script.jpg", what: "a JPEG start-of-image followed by HTML" },
] as const;

describe("media", () => {
  let server: StoryServer;
  before(async () => {
    server = await sharedStoryServer();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      let owner: string;
      let O: Clients;
      before(async () => {
        [owner] = (await newUsers(server, 1, "media")) as [string];
        O = server.clientsFor(owner, protocol);
      });

      for (const real of REAL_FILES) {
        it(`detects ${real.file} as ${real.mime}, stores it and gives the same bytes back`, async () => {
          const bytes = await fixture(real.file);
          const media = (await O.media.uploadMedia({ data: bytes })).media!;
          assert.ok(media.id, "has an id");
          assert.equal(media.type, real.type, "type detected from the bytes");
          assert.equal(media.contentType, real.mime);
          assert.equal(media.sizeBytes, BigInt(bytes.length));
          assert.equal(media.ownerId, owner);
          assert.ok(Math.abs(ms(media.createdAt) - Date.now()) < 60_000, "created_at is about now");
          const down = await O.media.downloadMedia({ mediaId: media.id });
          assert.deepEqual(Buffer.from(down.data), Buffer.from(bytes), "the very same bytes");
          assert.equal(down.media?.type, real.type);
          assert.deepEqual((await O.media.getMedia({ mediaId: media.id })).media, media, "GetMedia returns what the upload did");
          assert.ok(await mediaFileExists(server.dataDir, media.id), "stored as a file under DATA_DIR/media");

          const declared = await O.media.uploadMedia({ data: bytes, contentType: real.mime.toUpperCase() });
          assert.equal(declared.media?.type, real.type, "a matching declared type is accepted (case-insensitively)");
        });
      }

      it("rejects a declared type that does not match the bytes, and stores nothing", async () => {
        const filesBefore = await storedMediaFiles(server.dataDir);
        const png = await fixture("pixel.png");
        await expectInvalidArgument(O.media.uploadMedia({ data: png, contentType: "image/jpeg" }), "content_type");
        await expectInvalidArgument(O.media.uploadMedia({ data: await fixture("pixel.jpg"), contentType: "video/mp4" }), "content_type");
        await expectInvalidArgument(O.media.uploadMedia({ data: await fixture("clip.mp4"), contentType: "video/quicktime" }), "content_type");
        await expectInvalidArgument(O.media.uploadMedia({ data: png, contentType: "text/html" }), "content_type");
        assert.deepEqual(await storedMediaFiles(server.dataDir), filesBefore, "no file was written");
      });

      for (const liar of NOT_MEDIA) {
        it(`rejects ${liar.what} (${liar.file}) with INVALID_ARGUMENT, also when it claims to be an image`, async () => {
          const filesBefore = await storedMediaFiles(server.dataDir);
          const bytes = await fixture(liar.file);
          await expectInvalidArgument(O.media.uploadMedia({ data: bytes }), "data");
          await expectInvalidArgument(O.media.uploadMedia({ data: bytes, contentType: "image/jpeg" }), "data", "content_type");
          assert.deepEqual(await storedMediaFiles(server.dataDir), filesBefore, "no file was written");
        });
      }

      it("rejects an empty upload", async () => {
        await expectInvalidArgument(O.media.uploadMedia({ data: new Uint8Array(0) }), "data");
      });

      it("accepts exactly 10 MiB by default and rejects one byte more", async function () {
        this.timeout(60_000);
        const limit = 10 * 1024 * 1024;
        const atLimit = await pngOfSize(limit);
        const media = (await O.media.uploadMedia({ data: atLimit })).media!;
        assert.equal(media.sizeBytes, BigInt(limit));
        const down = await O.media.downloadMedia({ mediaId: media.id });
        assert.equal(down.data.length, limit, "downloads whole");
        const filesBefore = await storedMediaFiles(server.dataDir);
        await expectInvalidArgument(O.media.uploadMedia({ data: await pngOfSize(limit + 1) }), "data");
        assert.deepEqual(await storedMediaFiles(server.dataDir), filesBefore, "nothing stored");
      });

      it("lets only the owner read media no story uses; unknown ids are NOT_FOUND", async () => {
        const [other] = (await newUsers(server, 1, "nosy")) as [string];
        const X = server.clientsFor(other, protocol);
        await X.social.follow({ userId: owner });
        const media = (await O.media.uploadMedia({ data: await fixture("pixel.gif") })).media!;
        await expectCode(X.media.getMedia({ mediaId: media.id }), Code.NotFound);
        await expectCode(X.media.downloadMedia({ mediaId: media.id }), Code.NotFound);
        await expectCode(O.media.downloadMedia({ mediaId: "00000000-0000-4000-8000-000000000000" }), Code.NotFound);
        await expectCode(X.stories.createStory({ mediaId: media.id, privacy: TIERS[0].privacy }), Code.NotFound);

        const story = (await O.stories.createStory({ mediaId: media.id, privacy: TIERS[1].privacy })).story!;
        assert.equal(story.media?.id, media.id);
        const seen = await X.media.downloadMedia({ mediaId: media.id });
        assert.deepEqual(Buffer.from(seen.data), Buffer.from(await fixture("pixel.gif")), "a follower can download a FOLLOWERS story's media");
      });
    });
  }

  it("serves stories and media to browsers: gRPC-Web, Connect JSON and Connect GET", async () => {
    const [author, fan] = (await newUsers(server, 2, "browser")) as [string, string];
    await server.clientsFor(fan, "connect").social.follow({ userId: author });
    const bytes = await fixture("pixel.webp");
    const upload = await server.clientsFor(author, "grpc-web").media.uploadMedia({ data: bytes });
    const story = (await server.clientsFor(author, "connect-json").stories.createStory({ mediaId: upload.media!.id, privacy: TIERS[1].privacy })).story!;
    for (const protocol of ["grpc-web", "connect-json", "connect-get"] as const) {
      const F = server.clientsFor(fan, protocol);
      assert.equal((await F.stories.getStory({ storyId: story.id })).story?.id, story.id, `GetStory over ${protocol}`);
      const tray = await F.stories.listStoryFeed({});
      assert.ok(tray.entries.some((e) => e.authorId === author), `ListStoryFeed over ${protocol}`);
      const down = await F.media.downloadMedia({ mediaId: story.media!.id });
      assert.deepEqual(Buffer.from(down.data), Buffer.from(bytes), `DownloadMedia over ${protocol}`);
    }
  });

  it("honours MAX_MEDIA_BYTES", async () => {
    const small = await startStoryServer({ MAX_MEDIA_BYTES: "2048" });
    try {
      const [u] = (await newUsers(small, 1, "limit")) as [string];
      const U = small.clientsFor(u, "connect");
      assert.equal((await U.media.uploadMedia({ data: await pngOfSize(2048) })).media?.sizeBytes, 2048n);
      await expectInvalidArgument(U.media.uploadMedia({ data: await pngOfSize(2049) }), "data");
      assert.equal((await storedMediaFiles(small.dataDir)).length, 1, "only the upload within the limit was stored");
    } finally {
      await small.stop();
    }
  });
});
