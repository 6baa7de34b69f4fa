/**
 * Key epochs of encrypted conversations: an encrypted send or edit must carry the
 * conversation's current key_epoch (else FAILED_PRECONDITION with ErrorInfo reason
 * STALE_KEY_EPOCH, nothing stored); the epoch moves on by one when a member is removed or
 * leaves, and MemberRemoved carries the new one. A retry of a send that was already stored
 * returns the stored message whatever epoch it carries.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type TestServer } from "../helpers/test-server.ts";
import { useRealtimeServer } from "../helpers/realtime.ts";
import { expectCode } from "../helpers/expect.ts";
import { createGroup, listAllForward } from "../helpers/fixtures.ts";
import {
  assertEnvelope,
  createEncrypted,
  e2eClientsFor,
  errorInfoReasons,
  keyEpochOf,
  sealedEnvelope,
  sendEnvelope,
  type EnvelopeInit,
} from "../helpers/e2e.ts";

/** Awaits an encrypted send or edit and asserts it was refused as STALE_KEY_EPOCH. */
async function expectStale(call: Promise<unknown>, what: string): Promise<void> {
  const err = await expectCode(call, Code.FailedPrecondition).catch((e: Error) => assert.fail(`${what}: ${e.message}`));
  assert.ok(errorInfoReasons(err).includes("STALE_KEY_EPOCH"), `${what}: ErrorInfo reason STALE_KEY_EPOCH, got ${JSON.stringify(errorInfoReasons(err))}`);
}

function memberRemoved(conversationId: string, userId: string) {
  return (e: Event) =>
    e.conversationId === conversationId && e.kind.case === "memberRemoved" && e.kind.value.userId === userId ? e.kind.value : undefined;
}

describe("key epochs of encrypted conversations", () => {
  const fixture = useRealtimeServer();
  const live = fixture.live;
  let server: TestServer;
  before(() => {
    server = fixture.server;
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("refuses a send at an older or newer key epoch with STALE_KEY_EPOCH, storing nothing and using up no seq", async () => {
        const [ada, bob, cy] = (await newUsers(server, 3, "stale")) as [string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        for (const conv of [await createEncrypted(A, ConversationType.DIRECT, [bob]), await createEncrypted(A, ConversationType.GROUP, [bob, cy])]) {
          for (const epoch of [0, 2, 4_294_967_295]) {
            await expectStale(sendEnvelope(A, conv.id, sealedEnvelope(epoch)), `${conv.type === ConversationType.DIRECT ? "DIRECT" : "GROUP"} at epoch ${epoch}`);
          }
          assert.deepEqual(await listAllForward(A, conv.id), [], "nothing was stored");
          const ok = await sendEnvelope(A, conv.id, sealedEnvelope(1));
          assert.equal(ok.seq, 1n, "the refused sends used up no seq");
        }
      });

      it("moves the epoch on by one when a member is removed, and MemberRemoved carries it", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "removed")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        const feed = await live(bob, protocol, "bob");
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        const { value } = await feed.waitFor((f) => (f.case === "event" ? memberRemoved(conv.id, dan)(f.value) : undefined), "member_removed(dan)");
        assert.equal(value.keyEpoch, 2, "MemberRemoved carries the new epoch");
        assert.equal(value.left, false);
        for (const who of [ada, bob]) {
          assert.equal(await keyEpochOf(e2eClientsFor(server, who, protocol), conv.id), 2, `${who} reads epoch 2`);
        }
        await expectStale(sendEnvelope(A, conv.id, sealedEnvelope(1)), "a send at the old epoch");
        const ok = await sendEnvelope(e2eClientsFor(server, bob, protocol), conv.id, sealedEnvelope(2));
        assert.equal(ok.seq, 1n);
      });

      it("moves the epoch on by one when a member leaves, and MemberRemoved carries it", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "leaves")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        const feed = await live(ada, protocol, "ada");
        await e2eClientsFor(server, cy, protocol).conversations.removeMember({ conversationId: conv.id, userId: cy });
        const { value } = await feed.waitFor((f) => (f.case === "event" ? memberRemoved(conv.id, cy)(f.value) : undefined), "member_removed(cy, left)");
        assert.equal(value.left, true);
        assert.equal(value.keyEpoch, 3, "1, +1 for the removal, +1 for leaving");
        assert.equal(await keyEpochOf(A, conv.id), 3);
        await expectStale(sendEnvelope(A, conv.id, sealedEnvelope(2)), "a send at the epoch before the leave");
        await sendEnvelope(A, conv.id, sealedEnvelope(3));
      });

      it("keeps the epoch when a member is added", async () => {
        const [ada, bob, cy, eve] = (await newUsers(server, 4, "added")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
        const res = await A.conversations.addMembers({ conversationId: conv.id, userIds: [eve] });
        assert.equal(res.conversation?.keyEpoch, 1);
        assert.equal(await keyEpochOf(e2eClientsFor(server, eve, protocol), conv.id), 1, "the new member reads epoch 1");
        await sendEnvelope(e2eClientsFor(server, eve, protocol), conv.id, sealedEnvelope(1));
      });

      it("carries key_epoch 0 in MemberRemoved of a plain group, whose epoch stays 0", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "plainrm")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createGroup(A, [bob, cy, dan]);
        const feed = await live(bob, protocol, "bob");
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        const { value } = await feed.waitFor((f) => (f.case === "event" ? memberRemoved(conv.id, dan)(f.value) : undefined), "member_removed(dan)");
        assert.equal(value.keyEpoch, 0);
        assert.equal(await keyEpochOf(A, conv.id), 0);
      });

      it("refuses an edit at another key epoch with STALE_KEY_EPOCH and keeps the message as it was", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "staleedit")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        const original = sealedEnvelope(1, "original");
        const sent = await sendEnvelope(A, conv.id, original);
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        const edit = (envelope: EnvelopeInit) =>
          A.messages.editMessage({ conversationId: conv.id, seq: sent.seq, content: { case: "envelope", value: envelope } });
        await expectStale(edit(sealedEnvelope(1, "edited at the old epoch")), "an edit at the old epoch");
        await expectStale(edit(sealedEnvelope(3, "edited at a future epoch")), "an edit at a future epoch");
        const unchanged = (await A.messages.getMessage({ conversationId: conv.id, seq: sent.seq })).message!;
        assert.equal(unchanged.version, 1, "not edited");
        assertEnvelope(unchanged, original, "the original envelope");
        const current = sealedEnvelope(2, "edited at the current epoch");
        const edited = (await edit(current)).message!;
        assert.equal(edited.version, 2);
        assertEnvelope(edited, current, "the edit at the current epoch");
      });

      it("returns the original message when a send already stored is retried after the epoch moved on", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "retry")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        const clientMessageId = randomUUID();
        const envelope = sealedEnvelope(1);
        const first = await sendEnvelope(A, conv.id, envelope, { clientMessageId });
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        assert.equal(await keyEpochOf(A, conv.id), 2);

        const retried = await sendEnvelope(A, conv.id, envelope, { clientMessageId });
        assert.equal(retried.id, first.id, "the same message");
        assert.equal(retried.seq, first.seq);
        assertEnvelope(retried, envelope, "the stored envelope, at epoch 1");
        const reencrypted = await sendEnvelope(A, conv.id, sealedEnvelope(2), { clientMessageId });
        assert.equal(reencrypted.id, first.id, "a retry re-encrypted at the new epoch also returns the stored one");
        assertEnvelope(reencrypted, envelope, "still the stored envelope");
        assert.equal((await listAllForward(A, conv.id)).length, 1, "the retries stored nothing");
      });

      it("stores a send refused as stale once it is retried, with the same client_message_id, at the current epoch", async () => {
        const [ada, bob, cy, dan] = (await newUsers(server, 4, "rotate")) as [string, string, string, string];
        const A = e2eClientsFor(server, ada, protocol);
        const conv = await createEncrypted(A, ConversationType.GROUP, [bob, cy, dan]);
        await A.conversations.removeMember({ conversationId: conv.id, userId: dan });
        const clientMessageId = randomUUID();
        await expectStale(sendEnvelope(A, conv.id, sealedEnvelope(1), { clientMessageId }), "the send before the client re-read the epoch");
        const current = sealedEnvelope(await keyEpochOf(A, conv.id));
        const stored = await sendEnvelope(A, conv.id, current, { clientMessageId });
        assert.equal(stored.seq, 1n);
        assert.equal(stored.clientMessageId, clientMessageId);
        assertEnvelope(stored, current, "the re-encrypted envelope");
      });
    });
  }
});
