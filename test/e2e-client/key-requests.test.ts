/**
 * A missing key can be asked for, through the real server's to-device inboxes: a device of a
 * member that lacks the key of a message (it was registered after the message was sent) fails
 * to open it, which sends a key request to the sender device; the sender's SDK answers and the
 * device then opens the message — GROUP (sender key from its first link) and DIRECT (the one
 * message's key).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { decryptEventually, freshConversation, sendAndStore, tryDecrypt, useTrio, type E2eDevice } from "./support.ts";

describe("e2e client: a device that lacks a key asks the sender device for it", function () {
  this.timeout(60_000);
  const trio = useTrio("keyreq");
  let alice: E2eDevice;
  let b: string;
  let c: string;
  before(() => {
    [alice] = trio().devices;
    [, b, c] = trio().ids;
  });
  const lateDevice = (userId: string) => trio().addDevice(userId);

  it("opens a GROUP message sent before the device existed once the sender answered its request", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `group ${randomUUID()}`, encrypted: true });
    const old = await sendAndStore(alice, group.id, "sent before the tablet existed");
    const tablet = await lateDevice(b);
    const conversation = await freshConversation(tablet, group.id);
    const first = await tryDecrypt(tablet, conversation, old);
    assert.equal(first.ok, false, "the new device lacks the key at first");
    if (!first.ok) assert.equal(first.reason, "unknown_key");
    assert.equal((await decryptEventually(tablet, conversation, old)).text, "sent before the tablet existed", "opened after the key request was answered");
    assert.deepEqual(tablet.codecErrors, [], "nothing was dropped on the way");
  });

  it("asks for the earlier links of a sender key it holds only from a later one, and opens the older message", async () => {
    const group = await alice.client.createConversation({ memberIds: [b, c], name: `group ${randomUUID()}`, encrypted: true });
    const old = await sendAndStore(alice, group.id, "from before the phone");
    const phone = await lateDevice(b);
    // Alice hands the new device her sender key from its current link, past the old message,
    // on her own (device_changed); the phone asks for nothing until it reads.
    await phone.waitUntil(async () => (await phone.store.list("e2e/chains/")).length > 0, "the phone holds alice's sender key");
    const conversation = await freshConversation(phone, group.id);
    assert.equal((await decryptEventually(phone, conversation, old)).text, "from before the phone", "the earlier link came on request");
  });

  it("opens a DIRECT message sent before the device existed once the sender shared its key", async () => {
    const direct = await alice.client.createConversation({ memberIds: [c], encrypted: true });
    const old = await sendAndStore(alice, direct.id, "direct, before the laptop existed");
    const laptop = await lateDevice(c);
    const conversation = await freshConversation(laptop, direct.id);
    const first = await tryDecrypt(laptop, conversation, old);
    assert.equal(first.ok, false, "the message key was not boxed to the new device");
    if (!first.ok) assert.equal(first.reason, "not_for_this_device");
    assert.equal((await decryptEventually(laptop, conversation, old)).text, "direct, before the laptop existed");
  });
});
