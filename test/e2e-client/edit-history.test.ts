/**
 * Edits of encrypted messages: each version is its own envelope (a GROUP edit uses the next
 * link of the sender's chain), so a member reads the current version and every earlier one
 * of the edit history, in any order and again after a restart, while the same envelope
 * shown at another seq is still a replay.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { MessageSchema } from "../../gen/parley/v1/message_pb.ts";
import { assertDecryptFails, decryptEventually, freshConversation, sendAndStore, useTrio, type E2eDevice } from "./support.ts";

describe("e2e client: edit history of encrypted messages", function () {
  this.timeout(60_000);
  const trio = useTrio("edits");
  let alice: E2eDevice;
  let bob: E2eDevice;
  let b: string;
  let c: string;
  before(() => {
    [alice, bob] = trio().devices;
    [, b, c] = trio().ids;
  });

  for (const kind of ["GROUP", "DIRECT"] as const) {
    it(`reads every version of an edited ${kind} message, current first and then the history`, async () => {
      const conversationId =
        kind === "GROUP"
          ? (await alice.client.createConversation({ memberIds: [b, c], name: `edits ${randomUUID()}`, encrypted: true })).id
          : (await alice.client.createConversation({ memberIds: [b], encrypted: true })).id;
      const sent = await sendAndStore(alice, conversationId, "version one");
      await alice.client.edit(conversationId, sent.seq, "version two");
      await alice.client.edit(conversationId, sent.seq, "version three");
      const conversation = await freshConversation(bob, conversationId);
      const { message: current } = await bob.client.messagesClient.getMessage({ conversationId, seq: sent.seq });
      assert.equal((await decryptEventually(bob, conversation, current!)).text, "version three");

      const { edits } = await bob.client.messagesClient.listMessageEdits({ conversationId, seq: sent.seq });
      assert.equal(edits.length, 2, "two earlier versions");
      const texts: string[] = [];
      for (const edit of edits) {
        assert.equal(edit.content.case, "envelope");
        const version = create(MessageSchema, { ...current!, content: edit.content, version: edit.version });
        texts.push((await decryptEventually(bob, conversation, version)).text);
      }
      assert.deepEqual(texts, ["version one", "version two"], "the history opens, oldest first");
      assert.equal((await decryptEventually(bob, conversation, current!)).text, "version three", "and the current version again");
    });
  }

  it("still calls a GROUP envelope shown at another seq a replay", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `replay ${randomUUID()}`, encrypted: true });
    const sent = await sendAndStore(alice, group.id, "only once");
    const conversation = await freshConversation(bob, group.id);
    assert.equal((await decryptEventually(bob, conversation, sent)).text, "only once");
    const elsewhere = create(MessageSchema, { ...sent, seq: sent.seq + 1n });
    await assertDecryptFails(bob, conversation, elsewhere, ["replayed"], "the same envelope at another seq");
  });
});
