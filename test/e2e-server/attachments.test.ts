/**
 * Encrypted attachments: MediaService.UploadMedia with conversation_id. The bytes were sealed
 * on the client, so the server stores them untouched as MEDIA_TYPE_ENCRYPTED and hands them to
 * the conversation's current members only.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import nacl from "tweetnacl";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { MediaType } from "../../gen/parley/v1/media_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { createEncrypted } from "../helpers/e2e.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";

describe("encrypted attachments", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("stores sealed bytes as they came and lets every current member, and nobody else, download them", async () => {
        const [ada, bob, cy, eve] = (await newUsers(server, 4, "attach")) as [string, string, string, string];
        const A = server.clientsFor(ada, protocol);
        const group = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const sealed = nacl.randomBytes(5000);
        const { media } = await A.media.uploadMedia({ data: sealed, conversationId: group.id });
        assert.equal(media?.type, MediaType.ENCRYPTED);
        assert.equal(media?.contentType, "application/octet-stream");
        assert.equal(media?.conversationId, group.id);
        assert.equal(media?.sizeBytes, 5000n);

        const downloaded = await server.clientsFor(bob, protocol).media.downloadMedia({ mediaId: media!.id });
        assert.deepEqual(new Uint8Array(downloaded.data), sealed, "byte for byte");
        await expectCode(server.clientsFor(eve, protocol).media.downloadMedia({ mediaId: media!.id }), Code.NotFound);

        await A.conversations.removeMember({ conversationId: group.id, userId: cy });
        await expectCode(server.clientsFor(cy, protocol).media.getMedia({ mediaId: media!.id }), Code.NotFound);
      });

      it("refuses an attachment for a conversation the caller is not in (NOT_FOUND) or that is not encrypted", async () => {
        const [ada, bob, cy, eve] = (await newUsers(server, 4, "attachno")) as [string, string, string, string];
        const A = server.clientsFor(ada, protocol);
        const sealed = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const plain = await createGroup(A, [bob, cy]);
        await expectCode(server.clientsFor(eve, protocol).media.uploadMedia({ data: nacl.randomBytes(64), conversationId: sealed.id }), Code.NotFound);
        await expectInvalidArgument(A.media.uploadMedia({ data: nacl.randomBytes(64), conversationId: plain.id }), "conversation_id");
        await expectInvalidArgument(A.media.uploadMedia({ data: nacl.randomBytes(64), conversationId: sealed.id, contentType: "image/png" }), "content_type");
      });

      it("never lets an attachment become a story", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "attachstory")) as [string, string, string];
        const A = server.clientsFor(ada, protocol);
        const group = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const { media } = await A.media.uploadMedia({ data: nacl.randomBytes(64), conversationId: group.id });
        await expectInvalidArgument(A.stories.createStory({ mediaId: media!.id, privacy: StoryPrivacy.PUBLIC }), "media_id");
      });
    });
  }
});
