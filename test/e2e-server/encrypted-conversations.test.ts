/**
 * Encrypted conversations (CreateConversation with encrypted / blind_search, SendMessage and
 * EditMessage with envelopes): fixed at creation, starting at key epoch 1 (plain ones at 0);
 * a pair may have one plain and one encrypted DIRECT conversation; plain text is refused in an
 * encrypted conversation, and envelopes are stored and handed back byte for byte.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { useRealtimeServer } from "../helpers/realtime.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllConversations, listAllForward } from "../helpers/fixtures.ts";
import { isMessage } from "../helpers/feed.ts";
import { assertEnvelope, createEncrypted, e2eClientsFor, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";

describe("encrypted conversations", () => {
  const fixture = useRealtimeServer();
  const live = fixture.live;
  let server: TestServer;
  before(() => {
    server = fixture.server;
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("creates an encrypted DIRECT conversation at key epoch 1, as both members see it", async () => {
        const [ada, bob] = (await newUsers(server, 2, "edirect")) as [string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const res = await A.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob], encrypted: true });
        assert.equal(res.created, true);
        const c = res.conversation!;
        assert.equal(c.encrypted, true);
        assert.equal(c.blindSearch, false);
        assert.equal(c.keyEpoch, 1);
        const seen = (await e2eClientsFor(server, bob, protocol).conversations.getConversation({ conversationId: c.id })).conversation!;
        assert.deepEqual([seen.encrypted, seen.blindSearch, seen.keyEpoch], [true, false, 1], "bob sees the same");
        const listed = (await listAllConversations(A)).find((x) => x.id === c.id);
        assert.deepEqual([listed?.encrypted, listed?.keyEpoch], [true, 1], "ListConversations shows it too");
      });

      it("creates an encrypted GROUP at key epoch 1, with blind search when asked", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "egroup")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const plain = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        assert.deepEqual([plain.encrypted, plain.blindSearch, plain.keyEpoch], [true, false, 1]);
        const blind = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
        assert.deepEqual([blind.encrypted, blind.blindSearch, blind.keyEpoch], [true, true, 1]);
        const got = (await A.conversations.getConversation({ conversationId: blind.id })).conversation!;
        assert.deepEqual([got.encrypted, got.blindSearch, got.keyEpoch], [true, true, 1], "GetConversation shows the same");
      });

      it("creates plain conversations unencrypted, at key epoch 0", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "plain")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        for (const c of [await createGroup(A, [bob, cy]), await createDirect(A, bob)]) {
          assert.deepEqual([c.encrypted, c.blindSearch, c.keyEpoch], [false, false, 0]);
        }
      });

      it("keeps one plain and one encrypted DIRECT conversation per pair, and returns the same ones when asked again", async () => {
        const [ada, bob] = (await newUsers(server, 2, "pair")) as [string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const create = (clients: typeof A, peer: string, encrypted: boolean) =>
          clients.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [peer], encrypted });
        const plain = await create(A, bob, false);
        const sealed = await create(A, bob, true);
        assert.equal(plain.created, true);
        assert.equal(sealed.created, true, "the encrypted one is a second conversation");
        assert.notEqual(sealed.conversation!.id, plain.conversation!.id);
        assert.equal(plain.conversation!.encrypted, false);
        assert.equal(sealed.conversation!.encrypted, true);

        for (const [who, clients, peer] of [["ada", A, bob], ["bob", B, ada]] as const) {
          const againPlain = await create(clients, peer, false);
          const againSealed = await create(clients, peer, true);
          assert.deepEqual([againPlain.created, againPlain.conversation!.id], [false, plain.conversation!.id], `${who}: the same plain one`);
          assert.deepEqual([againSealed.created, againSealed.conversation!.id], [false, sealed.conversation!.id], `${who}: the same encrypted one`);
          assert.equal(againSealed.conversation!.keyEpoch, 1);
        }
        const directs = (await listAllConversations(B)).filter((c) => c.type === ConversationType.DIRECT);
        assert.deepEqual(directs.map((c) => c.id).sort(), [plain.conversation!.id, sealed.conversation!.id].sort(), "bob has exactly the two");
      });

      it("refuses blind_search without encrypted, naming blind_search", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "blindplain")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        await expectInvalidArgument(
          A.conversations.createConversation({ type: ConversationType.GROUP, memberIds: [bob, cy], name: "g", blindSearch: true }),
          "blind_search",
        );
        await expectInvalidArgument(
          A.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [bob], blindSearch: true }),
          "blind_search",
        );
        assert.deepEqual(await listAllConversations(A), [], "nothing was created");
      });

      it("refuses plain text in an encrypted conversation, naming text, without using up a seq", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "notext")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        for (const conv of [await createEncrypted(A, ConversationType.DIRECT, [bob]), await createEncrypted(A, ConversationType.GROUP, [bob, cy])]) {
          await expectInvalidArgument(
            A.messages.sendMessage({ conversationId: conv.id, clientMessageId: randomUUID(), content: { case: "text", value: "in the clear" } }),
            "text",
          );
          const sent = await sendEnvelope(A, conv.id, sealedEnvelope(1));
          assert.equal(sent.seq, 1n, "the refused text used up no seq");
          assert.equal((await listAllForward(A, conv.id)).length, 1, "only the envelope is stored");
        }
      });

      it("hands the envelope back byte for byte: SendMessage, GetMessage, ListMessages and the message_created event", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "bytes")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const B = e2eClientsFor(server, bob, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const feed = await live(bob, protocol, "bob");
        const envelope = sealedEnvelope(1);
        const sent = await sendEnvelope(A, conv.id, envelope);
        assertEnvelope(sent, envelope, "SendMessage");
        assertEnvelope((await B.messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message, envelope, "GetMessage");
        assertEnvelope((await listAllForward(B, conv.id))[0], envelope, "ListMessages");
        const { value: event } = await feed.waitFor(
          (f) => (f.case === "event" && isMessage(conv.id, sent.seq)(f.value) ? f.value : undefined),
          "message_created for the envelope",
        );
        assertEnvelope(event.kind.case === "messageCreated" ? event.kind.value.message : undefined, envelope, "message_created event");
      });

      it("keeps an edited message encrypted, with the new envelope byte for byte, and refuses text in an edit", async () => {
        const [ada, bob] = (await newUsers(server, 2, "edit")) as [string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.DIRECT, [bob]);
        const sent = await sendEnvelope(A, conv.id, sealedEnvelope(1, "first"));
        await expectInvalidArgument(
          A.messages.editMessage({ conversationId: conv.id, seq: sent.seq, content: { case: "text", value: "now in the clear" } }),
          "text",
        );
        const replacement = sealedEnvelope(1, "second");
        const edited = (await A.messages.editMessage({ conversationId: conv.id, seq: sent.seq, content: { case: "envelope", value: replacement } })).message!;
        assert.equal(edited.version, 2);
        assertEnvelope(edited, replacement, "EditMessage");
        const got = (await e2eClientsFor(server, bob, protocol).messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message!;
        assert.equal(got.version, 2);
        assertEnvelope(got, replacement, "GetMessage after the edit");
      });
    });
  }
});
