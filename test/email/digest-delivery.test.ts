/**
 * Email digests end to end: a real server with SMTP_URL pointing at a real SMTP server started
 * here; messages are sent through the API and the delivered mail is read back.
 */
import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { EmailDigestFrequency, NotificationLevel } from "../../gen/parley/v1/notification_pb.ts";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { startTestServer, type TestServer } from "../helpers/test-server.ts";
import { startSmtpServer, type SmtpTestServer } from "../helpers/smtp.ts";
import { createDirect, createGroup, sendText } from "../helpers/fixtures.ts";
import { createEncrypted, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";
import { randomUUID } from "node:crypto";
import { digestEnv, HOURLY_SECONDS, mailsTo, peopleWithDigests, type Person } from "./support.ts";

describe("email digests", function () {
  this.timeout(60_000);
  let smtp: SmtpTestServer;
  let server: TestServer;
  before(async () => {
    smtp = await startSmtpServer();
    server = await startTestServer(digestEnv(smtp));
  });
  after(async () => {
    await server?.stop();
    await smtp?.close();
  });

  async function mention(from: Person, conversationId: string, userId: string, text: string) {
    const res = await from.clients.messages.sendMessage({
      conversationId,
      clientMessageId: randomUUID(),
      content: { case: "text", value: text },
      mentionUserIds: [userId],
    });
    return res.message!;
  }

  it("emails a missed mention exactly once, with the conversation, the sender and the text", async () => {
    const [ada, bob, cy] = await peopleWithDigests(server, 3);
    const group = await createGroup(ada!.clients, [bob!.id, cy!.id], "Launch <planning> & co");
    const text = `look at this <b>now</b> ${randomUUID()}`;
    await mention(ada!, group.id, bob!.id, text);

    const mail = await smtp.waitForMail((m) => m.to.includes(bob!.address), 15_000);
    assert.deepEqual(mail.to, [bob!.address]);
    assert.match(mail.from, /no-reply@localhost/);
    assert.equal(mail.subject, "You missed 1 mention on Parley");
    assert.ok(mail.text.includes(text), `the text part has the message: ${mail.text}`);
    assert.ok(mail.text.includes(`Name of ${ada!.id}`), "the sender's display name");
    assert.ok(mail.text.includes("Launch <planning> & co"), "the conversation's name");
    assert.ok(mail.html.includes("look at this &#60;b&#62;now&#60;/b&#62;"), `user text is escaped in HTML: ${mail.html}`);
    assert.ok(mail.html.includes("Launch &#60;planning&#62; &#38; co"));
    assert.ok(!mail.html.includes("<b>now</b>"));

    // Past the HOURLY period and several sweeps: still one (the window is recorded as covered).
    await delay((HOURLY_SECONDS + 2) * 1000);
    assert.equal(mailsTo(smtp, bob!.address).length, 1);
    const settings = (await bob!.clients.notifications.getEmailDigestSettings({})).settings!;
    assert.ok(settings.lastSentAt, "last_sent_at is set");
    assert.equal(mailsTo(smtp, ada!.address).length, 0, "the sender gets nothing");
    assert.equal(mailsTo(smtp, cy!.address).length, 0, "nor does a member who was not mentioned");
  });

  it("sends nothing for a mention read within the grace, whether by notification or by read position", async () => {
    const [ada, bob, cy, dan] = await peopleWithDigests(server, 4);
    const group = await createGroup(ada!.clients, [bob!.id, cy!.id, dan!.id]);
    const m = await mention(ada!, group.id, bob!.id, "read me soon");
    await mention(ada!, group.id, cy!.id, "read me soon too");
    // Dan does not read: his digest shows the sweep covered this moment.
    await mention(ada!, group.id, dan!.id, "dan misses this");
    // Bob marks the notification read; Cy reads the conversation.
    for (let i = 0; i < 50; i++) {
      const listed = await bob!.clients.notifications.listNotifications({ unreadOnly: true });
      if (listed.notifications.length > 0) {
        await bob!.clients.notifications.markNotificationsRead({ all: true });
        break;
      }
      await delay(20);
    }
    await cy!.clients.conversations.markRead({ conversationId: group.id, seq: m.seq + 1n });
    await smtp.waitForMail((mail) => mail.to.includes(dan!.address), 15_000);
    await delay(1_500);
    assert.equal(mailsTo(smtp, bob!.address).length, 0, "bob read the notification in time");
    assert.equal(mailsTo(smtp, cy!.address).length, 0, "cy read the conversation in time");
  });

  it("lists a missed DIRECT message, and only counts those of an encrypted conversation", async () => {
    const [ada, bob] = await peopleWithDigests(server, 2);
    const plain = await createDirect(ada!.clients, bob!.id);
    const sealed = await createEncrypted(ada!.clients, ConversationType.DIRECT, [bob!.id]);
    const secret = `never in mail ${randomUUID()}`;
    const envelope = sealedEnvelope(1, secret);
    await sendEnvelope(ada!.clients, sealed.id, envelope);
    await sendEnvelope(ada!.clients, sealed.id, sealedEnvelope(1, secret));
    const hello = `hello bob ${randomUUID()}`;
    await sendText(ada!.clients, plain.id, hello);

    // The three sends may straddle a sweep's cutoff and so land in two digests (the second one
    // HOURLY_SECONDS later): read all of bob's.
    await smtp.waitForMail((m) => m.to.includes(bob!.address) && m.text.includes(hello), 20_000);
    const mails = mailsTo(smtp, bob!.address);
    const subjects = mails.map((m) => m.subject).join(" + ");
    assert.ok(["You missed 3 direct messages on Parley", "You missed 1 direct message on Parley + You missed 2 direct messages on Parley", "You missed 2 direct messages on Parley + You missed 1 direct message on Parley"].includes(subjects), subjects);
    const encryptedCounted = mails.reduce((sum, m) => sum + Number(/(\d+) new encrypted messages?/.exec(m.text)?.[1] ?? 0), 0);
    assert.equal(encryptedCounted, 2, `the encrypted ones are counted: ${mails.map((m) => m.text).join("\n")}`);
    const ciphertextBase64 = Buffer.from(envelope.ciphertext).toString("base64").slice(0, 24);
    for (const mail of mails) {
      assert.ok(!mail.raw.includes(secret) && !mail.raw.includes("secret"), "no plaintext of the encrypted ones");
      assert.ok(!mail.raw.includes(ciphertextBase64), "no ciphertext either");
    }
    assert.equal(mailsTo(smtp, ada!.address).length, 0, "the sender's own messages are not missed");
  });

  it("sends nothing to a user with digests OFF, or for a conversation set to NONE or muted", async () => {
    const [ada, bob, cy, dan] = await peopleWithDigests(server, 4);
    const [off] = await peopleWithDigests(server, 1, EmailDigestFrequency.OFF);
    const group = await createGroup(ada!.clients, [bob!.id, cy!.id, dan!.id, off!.id]);
    await bob!.clients.notifications.setNotificationSettings({ conversationId: group.id, level: NotificationLevel.ALL, mutedUntil: { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 } });
    // Cy's level goes to NONE after the notification exists: the digest still leaves it out.
    await mention(ada!, group.id, off!.id, "off");
    await mention(ada!, group.id, bob!.id, "muted");
    await mention(ada!, group.id, cy!.id, "none");
    await cy!.clients.notifications.setNotificationSettings({ conversationId: group.id, level: NotificationLevel.NONE });
    await mention(ada!, group.id, dan!.id, "control");
    await smtp.waitForMail((mail) => mail.to.includes(dan!.address), 15_000);
    await delay(1_500);
    assert.equal(mailsTo(smtp, off!.address).length, 0, "OFF");
    assert.equal(mailsTo(smtp, bob!.address).length, 0, "muted");
    assert.equal(mailsTo(smtp, cy!.address).length, 0, "NONE");
  });

  it("leaves out a blocked sender's direct messages", async () => {
    const [ada, bob, cy] = await peopleWithDigests(server, 3);
    const blocked = `before the block ${randomUUID()}`;
    await sendText(ada!.clients, (await createDirect(ada!.clients, bob!.id)).id, blocked);
    await bob!.clients.social.block({ userId: ada!.id });
    const fine = `from cy ${randomUUID()}`;
    await sendText(cy!.clients, (await createDirect(cy!.clients, bob!.id)).id, fine);
    const mail = await smtp.waitForMail((m) => m.to.includes(bob!.address), 15_000);
    assert.ok(mail.text.includes(fine), "cy's message is there");
    assert.ok(!mail.raw.includes(blocked) && !mail.text.includes(`Name of ${ada!.id}`), "ada's is not");
  });

  it("emails what was missed after a digest in the next one, without repeating the first", async () => {
    const [ada, bob, cy] = await peopleWithDigests(server, 3);
    const group = await createGroup(ada!.clients, [bob!.id, cy!.id]);
    const first = `first ${randomUUID()}`;
    await mention(ada!, group.id, bob!.id, first);
    await smtp.waitForMail((m) => m.to.includes(bob!.address), 15_000);
    const second = `second ${randomUUID()}`;
    await mention(ada!, group.id, bob!.id, second);
    const next = await smtp.waitForMail((m) => m.to.includes(bob!.address) && m.text.includes(second), 20_000);
    assert.ok(!next.text.includes(first), "the first mention was covered by the first digest");
    const [one, two] = mailsTo(smtp, bob!.address);
    const gapMs = Date.parse(two!.headers["date"]!) - Date.parse(one!.headers["date"]!);
    assert.ok(gapMs >= (HOURLY_SECONDS - 1) * 1000, `the second waited for the period (${gapMs} ms)`);
  });
});
