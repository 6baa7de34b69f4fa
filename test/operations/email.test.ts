/**
 * Email digests, from the contract's side: a real SMTP server (smtp-server) started by the test
 * receives what the server sends through SMTP_URL, and the tests look at the delivered mail.
 * A missed mention or direct message sends one digest to the address set; what is read within
 * EMAIL_DIGEST_GRACE_SECONDS sends none; an encrypted conversation's text or ciphertext never
 * appears in a mail; OFF sends nothing; bad settings are refused and change nothing.
 *
 * The negative cases carry a control: a second recipient in the same situation, except for what
 * the test is about, who does get a mail. Once the control's mail has arrived and a few more
 * sweeps have passed, the other recipient's silence means something.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { EmailDigestFrequency } from "../../gen/parley/v1/notification_pb.ts";
import { MAIN_PROTOCOLS, newUsers, type Clients, type Protocol, type TestServer } from "../helpers/test-server.ts";
import { multiNodeAvailable, startCluster, startRealtimeServer, type Cluster } from "../helpers/realtime.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { createDirect, createGroup } from "../helpers/fixtures.ts";
import { createEncrypted, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";
import { startSmtpServer, type ReceivedMail, type SmtpTestServer } from "../helpers/smtp.ts";

/** Short enough for tests, long enough that a read right after the send is surely in time. */
const GRACE_SECONDS = 3;
const SWEEP_SECONDS = 1;
/** How long a digest may take: the grace, a sweep, and room for a loaded machine. */
const MAIL_DEADLINE_MS = (GRACE_SECONDS + SWEEP_SECONDS) * 1000 + 15_000;
/** How long to keep watching for mail that must not come, after the control's arrived. */
const QUIET_MS = (3 * SWEEP_SECONDS + 1) * 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The environment of a server that sends digests to the test's SMTP server, on short timers. */
const digestEnv = (smtp: SmtpTestServer) => ({
  SMTP_URL: smtp.url,
  EMAIL_DIGEST_GRACE_SECONDS: String(GRACE_SECONDS),
  EMAIL_DIGEST_SWEEP_SECONDS: String(SWEEP_SECONDS),
});

/** A fresh address for a user (lower case, so no normalisation can change it). */
function addressOf(userId: string): string {
  return `${userId.toLowerCase()}-${randomUUID().slice(0, 8)}@example.test`;
}

describe("email digests", () => {
  let smtp: SmtpTestServer;
  let server: TestServer;
  before(async function () {
    this.timeout(60_000);
    smtp = await startSmtpServer();
    server = await startRealtimeServer(digestEnv(smtp));
  });
  after(async function () {
    this.timeout(30_000);
    await server?.stop();
    await smtp?.close();
  });

  const mailsTo = (address: string): ReceivedMail[] => smtp.mails().filter((m) => m.to.includes(address));
  const waitForMailTo = (address: string, what: string): Promise<ReceivedMail> =>
    smtp.waitForMail((m) => m.to.includes(address), MAIL_DEADLINE_MS).catch((err: Error) => {
      throw new Error(`${what}: ${err.message}`);
    });
  const body = (m: ReceivedMail) => `${m.subject}\n${m.text}\n${m.html}`;

  /** Gives the user an address and HOURLY digests; returns the address. */
  async function subscribe(clients: Clients, userId: string, frequency = EmailDigestFrequency.HOURLY): Promise<string> {
    const emailAddress = addressOf(userId);
    const res = await clients.notifications.setEmailDigestSettings({ emailAddress, frequency });
    assert.equal(res.settings?.emailAddress, emailAddress);
    assert.equal(res.settings?.frequency, frequency);
    return emailAddress;
  }

  async function mention(clients: Clients, conversationId: string, mentioned: string[], text: string) {
    const res = await clients.messages.sendMessage({
      conversationId,
      clientMessageId: randomUUID(),
      content: { case: "text", value: text },
      mentionUserIds: mentioned,
    });
    return res.message!;
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      const clientsOf = (user: string, p: Protocol = protocol) => server.clientsFor(user, p);

      it("is off, with no address, until set", async () => {
        const [user] = (await newUsers(server, 1, "fresh")) as [string];
        const { settings } = await clientsOf(user).notifications.getEmailDigestSettings({});
        assert.ok(settings);
        assert.ok(
          ([EmailDigestFrequency.OFF, EmailDigestFrequency.UNSPECIFIED] as EmailDigestFrequency[]).includes(settings.frequency),
          `frequency ${settings.frequency}, expected OFF (or UNSPECIFIED, which means OFF)`,
        );
        assert.equal(settings.emailAddress, "");
        assert.equal(settings.lastSentAt, undefined);
      });

      it("keeps what was set, and forgets the address when OFF is set without one", async () => {
        const [user] = (await newUsers(server, 1, "keep")) as [string];
        const c = clientsOf(user);
        const address = addressOf(user);
        const set = await c.notifications.setEmailDigestSettings({ emailAddress: address, frequency: EmailDigestFrequency.DAILY });
        assert.deepEqual([set.settings?.emailAddress, set.settings?.frequency], [address, EmailDigestFrequency.DAILY]);
        const got = await c.notifications.getEmailDigestSettings({});
        assert.deepEqual([got.settings?.emailAddress, got.settings?.frequency, got.settings?.lastSentAt], [address, EmailDigestFrequency.DAILY, undefined]);

        await c.notifications.setEmailDigestSettings({ emailAddress: address, frequency: EmailDigestFrequency.OFF });
        const off = await c.notifications.getEmailDigestSettings({});
        assert.deepEqual([off.settings?.emailAddress, off.settings?.frequency], [address, EmailDigestFrequency.OFF], "OFF with an address keeps it");

        await c.notifications.setEmailDigestSettings({ emailAddress: "", frequency: EmailDigestFrequency.OFF });
        const forgotten = await c.notifications.getEmailDigestSettings({});
        assert.deepEqual([forgotten.settings?.emailAddress, forgotten.settings?.frequency], ["", EmailDigestFrequency.OFF], "OFF without one forgets it");
      });

      it("refuses bad addresses and a frequency without an address with INVALID_ARGUMENT, leaving the settings as they were", async () => {
        const [user] = (await newUsers(server, 1, "badset")) as [string];
        const c = clientsOf(user);
        const address = addressOf(user);
        await c.notifications.setEmailDigestSettings({ emailAddress: address, frequency: EmailDigestFrequency.HOURLY });
        const bad: [string, { emailAddress: string; frequency: EmailDigestFrequency }, string[]][] = [
          ["no @", { emailAddress: "not-an-address", frequency: EmailDigestFrequency.HOURLY }, ["email_address"]],
          ["nothing after @", { emailAddress: "someone@", frequency: EmailDigestFrequency.HOURLY }, ["email_address"]],
          ["nothing before @", { emailAddress: "@example.test", frequency: EmailDigestFrequency.DAILY }, ["email_address"]],
          ["a space", { emailAddress: "some one@example.test", frequency: EmailDigestFrequency.HOURLY }, ["email_address"]],
          ["a header smuggled in", { emailAddress: "a@example.test\r\nBcc: victim@example.test", frequency: EmailDigestFrequency.HOURLY }, ["email_address"]],
          ["400 characters", { emailAddress: `${"a".repeat(388)}@example.test`, frequency: EmailDigestFrequency.HOURLY }, ["email_address"]],
          ["HOURLY without an address", { emailAddress: "", frequency: EmailDigestFrequency.HOURLY }, ["email_address", "frequency"]],
          ["DAILY without an address", { emailAddress: "", frequency: EmailDigestFrequency.DAILY }, ["email_address", "frequency"]],
          ["an unknown frequency", { emailAddress: addressOf(user), frequency: 99 as EmailDigestFrequency }, ["frequency"]],
        ];
        for (const [what, req, fields] of bad) {
          try {
            await expectInvalidArgument(c.notifications.setEmailDigestSettings(req), ...fields);
          } catch (err) {
            throw new Error(`${what}: ${(err as Error).message}`);
          }
          const after = await c.notifications.getEmailDigestSettings({});
          assert.deepEqual(
            [after.settings?.emailAddress, after.settings?.frequency],
            [address, EmailDigestFrequency.HOURLY],
            `${what}: the settings are unchanged`,
          );
        }
      });

      it("needs a signed-in caller", async () => {
        const anonymous = server.clientsWithAuthorization(undefined, protocol);
        await expectCode(anonymous.notifications.getEmailDigestSettings({}), Code.Unauthenticated);
        await expectCode(anonymous.notifications.setEmailDigestSettings({ emailAddress: "x@example.test", frequency: EmailDigestFrequency.HOURLY }), Code.Unauthenticated);
      });

      it("sends exactly one email for a missed mention, to the address set, with the mention's text", async function () {
        this.timeout(60_000);
        const [alice, bob, carol] = (await newUsers(server, 3, "mention")) as [string, string, string];
        const address = await subscribe(clientsOf(bob), bob);
        const group = await createGroup(clientsOf(alice), [bob, carol], "digest group");
        const text = `lunch at noon? ${randomUUID()}`;
        const sentAt = Date.now();
        await mention(clientsOf(alice), group.id, [bob], text);

        const mail = await waitForMailTo(address, "the missed mention's digest");
        assert.deepEqual(mail.to, [address], "to bob's address only");
        assert.ok(body(mail).includes(text), `the digest shows the mention's text; got:\n${body(mail)}`);
        await sleep(QUIET_MS);
        assert.equal(mailsTo(address).length, 1, "exactly one email");
        const { settings } = await clientsOf(bob).notifications.getEmailDigestSettings({});
        assert.ok(settings?.lastSentAt, "last_sent_at is set once a digest went out");
        assert.ok(timestampMs(settings.lastSentAt) >= sentAt - 1000, "last_sent_at is when the digest went out");
      });

      it("sends none for a mention read within the grace period", async function () {
        this.timeout(60_000);
        const [alice, bob, dave] = (await newUsers(server, 3, "readintime")) as [string, string, string];
        const bobAddress = await subscribe(clientsOf(bob), bob);
        const daveAddress = await subscribe(clientsOf(dave), dave);
        const group = await createGroup(clientsOf(alice), [bob, dave], "read in time");
        const m = await mention(clientsOf(alice), group.id, [bob, dave], `are you there? ${randomUUID()}`);
        // Bob reads it at once, as a client opening the conversation does: the conversation's
        // read position and the notification.
        const t0 = Date.now();
        await clientsOf(bob).conversations.markRead({ conversationId: group.id, seq: m.seq });
        await clientsOf(bob).notifications.markNotificationsRead({ all: true });
        assert.ok(Date.now() - t0 < GRACE_SECONDS * 1000, "bob read it within the grace period");

        await waitForMailTo(daveAddress, "dave's digest (the control: he did not read it)");
        await sleep(QUIET_MS);
        assert.deepEqual(mailsTo(bobAddress).map((x) => x.subject), [], "no email for what was read in time");
      });

      it("sends one email for a missed direct message", async function () {
        this.timeout(60_000);
        const [alice, bob] = (await newUsers(server, 2, "dm")) as [string, string];
        const address = await subscribe(clientsOf(bob), bob);
        const direct = await createDirect(clientsOf(alice), bob);
        const text = `call me back ${randomUUID()}`;
        await clientsOf(alice).messages.sendMessage({ conversationId: direct.id, clientMessageId: randomUUID(), content: { case: "text", value: text } });

        const mail = await waitForMailTo(address, "the missed direct message's digest");
        assert.ok(body(mail).includes(text), `the digest shows the direct message; got:\n${body(mail)}`);
        await sleep(QUIET_MS);
        assert.equal(mailsTo(address).length, 1, "exactly one email");
      });

      it("never puts an encrypted conversation's text or ciphertext in the email", async function () {
        this.timeout(60_000);
        const [alice, bob, dave, erin] = (await newUsers(server, 4, "sealed")) as [string, string, string, string];
        const bobAddress = await subscribe(clientsOf(bob), bob);
        const daveAddress = await subscribe(clientsOf(dave), dave);
        const direct = await createEncrypted(clientsOf(alice), ConversationType.DIRECT, [bob]);
        const group = await createEncrypted(clientsOf(alice), ConversationType.GROUP, [dave, erin]);
        const secret = `the vault code is ${randomUUID()}`;
        const dm = sealedEnvelope(direct.keyEpoch, secret);
        await sendEnvelope(clientsOf(alice), direct.id, dm);
        const groupEnvelope = sealedEnvelope(group.keyEpoch, secret);
        await clientsOf(alice).messages.sendMessage({
          conversationId: group.id,
          clientMessageId: randomUUID(),
          content: { case: "envelope", value: groupEnvelope },
          mentionUserIds: [dave],
        });

        const mails = [
          await waitForMailTo(bobAddress, "the encrypted direct message's digest"),
          await waitForMailTo(daveAddress, "the encrypted mention's digest"),
        ];
        for (const [who, mail, envelope] of [["bob", mails[0]!, dm], ["dave", mails[1]!, groupEnvelope]] as const) {
          const everything = `${mail.raw}\n${body(mail)}`;
          assert.ok(!everything.includes(secret), `${who}: no plain text`);
          const ct = Buffer.from(envelope.ciphertext);
          // The ciphertext in any of the usual encodings, whole or its first bytes.
          for (const encoded of [
            ct.toString("base64"),
            ct.subarray(0, 48).toString("base64"),
            ct.toString("base64url"),
            ct.subarray(0, 48).toString("base64url"),
            ct.subarray(0, 32).toString("hex"),
            ct.subarray(ct.length - 32).toString("hex"),
            Buffer.from(envelope.nonce).toString("base64"),
          ]) {
            assert.ok(!everything.includes(encoded), `${who}: the email holds none of the ciphertext (${encoded.slice(0, 16)}…)`);
          }
        }
        await sleep(QUIET_MS);
        assert.equal(mailsTo(bobAddress).length, 1, "bob: exactly one email");
        assert.equal(mailsTo(daveAddress).length, 1, "dave: exactly one email");
      });

      it("sends nothing to a user who turned digests OFF", async function () {
        this.timeout(60_000);
        const [alice, bob, dave] = (await newUsers(server, 3, "optout")) as [string, string, string];
        const bobAddress = await subscribe(clientsOf(bob), bob);
        const off = await clientsOf(bob).notifications.setEmailDigestSettings({ emailAddress: bobAddress, frequency: EmailDigestFrequency.OFF });
        assert.equal(off.settings?.frequency, EmailDigestFrequency.OFF);
        const daveAddress = await subscribe(clientsOf(dave), dave);
        const group = await createGroup(clientsOf(alice), [bob, dave], "opted out");
        await mention(clientsOf(alice), group.id, [bob, dave], `standup moved ${randomUUID()}`);
        const direct = await createDirect(clientsOf(alice), bob);
        await clientsOf(alice).messages.sendMessage({ conversationId: direct.id, clientMessageId: randomUUID(), content: { case: "text", value: "psst" } });

        await waitForMailTo(daveAddress, "dave's digest (the control: his are on)");
        await sleep(QUIET_MS);
        assert.deepEqual(mailsTo(bobAddress).map((x) => x.subject), [], "OFF sends nothing");
        const { settings } = await clientsOf(bob).notifications.getEmailDigestSettings({});
        assert.equal(settings?.lastSentAt, undefined, "no digest went out");
      });
    });
  }
});

describe("email digests on two nodes sharing PostgreSQL and NATS", () => {
  let smtp: SmtpTestServer | undefined;
  let cluster: Cluster | undefined;
  before(async function () {
    if (!multiNodeAvailable()) return this.skip();
    this.timeout(60_000);
    smtp = await startSmtpServer();
    cluster = await startCluster(2, digestEnv(smtp));
  });
  after(async function () {
    this.timeout(30_000);
    await cluster?.stop();
    await smtp?.close();
  });

  it("sends each missed mention's digest once, though both nodes look for them", async function () {
    this.timeout(60_000);
    const [n0, n1] = cluster!.nodes as [TestServer, TestServer];
    const [alice, ...others] = await newUsers(n0, 7, "twonode");
    const addresses = new Map<string, string>();
    for (const [i, user] of others.entries()) {
      const address = addressOf(user);
      await (i % 2 ? n1 : n0).clientsFor(user, MAIN_PROTOCOLS[i % 2]!).notifications.setEmailDigestSettings({ emailAddress: address, frequency: EmailDigestFrequency.HOURLY });
      addresses.set(user, address);
    }
    const group = await createGroup(n1.clientsFor(alice!, "grpc"), others, "two nodes");
    await n0.clientsFor(alice!, "connect").messages.sendMessage({
      conversationId: group.id,
      clientMessageId: randomUUID(),
      content: { case: "text", value: `all hands ${randomUUID()}` },
      mentionUserIds: others,
    });
    for (const address of addresses.values()) {
      await smtp!.waitForMail((m) => m.to.includes(address), MAIL_DEADLINE_MS);
    }
    await sleep(QUIET_MS);
    const counts = [...addresses.values()].map((a) => smtp!.mails().filter((m) => m.to.includes(a)).length);
    assert.deepEqual(counts, others.map(() => 1), "one email per recipient, not one per node");
  });
});
