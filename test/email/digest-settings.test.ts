/** NotificationService.Get/SetEmailDigestSettings over gRPC and Connect: defaults, changes, bad input with nothing written. */
import assert from "node:assert/strict";
import { EmailDigestFrequency } from "../../gen/parley/v1/notification_pb.ts";
import { MAIN_PROTOCOLS, newUsers, startTestServer, type Clients, type TestServer } from "../helpers/test-server.ts";
import { Code } from "@connectrpc/connect";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";

/** A syntactically fine address of exactly `length` characters: ada@ and labels of at most 63. */
function addressOfLength(length: number): string {
  const domain = `${"e".repeat(60)}.${"f".repeat(60)}.${"g".repeat(60)}.com`;
  const first = length - "ada@".length - domain.length - 1;
  return `ada@${"d".repeat(first)}.${domain}`;
}

describe("email digest settings", function () {
  // Room for an embedded (PGlite) start on a busy machine.
  this.timeout(60_000);
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  async function settingsOf(clients: Clients) {
    const settings = (await clients.notifications.getEmailDigestSettings({})).settings!;
    return { emailAddress: settings.emailAddress, frequency: settings.frequency, lastSentAt: settings.lastSentAt };
  }

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("starts OFF with no address, and keeps what is set", async () => {
        const [ada] = await newUsers(server, 1, "settings");
        const A = server.clientsFor(ada!, protocol);
        assert.deepEqual(await settingsOf(A), { emailAddress: "", frequency: EmailDigestFrequency.OFF, lastSentAt: undefined });

        const set = await A.notifications.setEmailDigestSettings({ emailAddress: "Ada.Lovelace+parley@example.co.uk", frequency: EmailDigestFrequency.HOURLY });
        assert.equal(set.settings?.emailAddress, "Ada.Lovelace+parley@example.co.uk");
        assert.equal(set.settings?.frequency, EmailDigestFrequency.HOURLY);
        assert.deepEqual(await settingsOf(A), { emailAddress: "Ada.Lovelace+parley@example.co.uk", frequency: EmailDigestFrequency.HOURLY, lastSentAt: undefined });

        await A.notifications.setEmailDigestSettings({ emailAddress: "ada@example.org", frequency: EmailDigestFrequency.DAILY });
        assert.deepEqual(await settingsOf(A), { emailAddress: "ada@example.org", frequency: EmailDigestFrequency.DAILY, lastSentAt: undefined });

        // OFF keeps an address given with it, and forgets it when given none.
        await A.notifications.setEmailDigestSettings({ emailAddress: "ada@example.org", frequency: EmailDigestFrequency.OFF });
        assert.deepEqual(await settingsOf(A), { emailAddress: "ada@example.org", frequency: EmailDigestFrequency.OFF, lastSentAt: undefined });
        await A.notifications.setEmailDigestSettings({ emailAddress: "", frequency: EmailDigestFrequency.OFF });
        assert.deepEqual(await settingsOf(A), { emailAddress: "", frequency: EmailDigestFrequency.OFF, lastSentAt: undefined });
      });

      it("refuses both RPCs without a valid token (UNAUTHENTICATED)", async () => {
        const anonymous = server.clientsWithAuthorization(undefined, protocol);
        await expectCode(anonymous.notifications.getEmailDigestSettings({}), Code.Unauthenticated);
        await expectCode(anonymous.notifications.setEmailDigestSettings({ emailAddress: "x@example.com", frequency: EmailDigestFrequency.DAILY }), Code.Unauthenticated);
        const forged = server.clientsWithAuthorization("Bearer not-a-token", protocol);
        await expectCode(forged.notifications.getEmailDigestSettings({}), Code.Unauthenticated);
      });

      it("forgets the settings and the address when the account is deleted", async () => {
        const [ada] = await newUsers(server, 1, "erased");
        const A = server.clientsFor(ada!, protocol);
        await A.notifications.setEmailDigestSettings({ emailAddress: "ada@example.com", frequency: EmailDigestFrequency.DAILY });
        await A.users.deleteAccount({ confirmUserId: ada! });
        // The id signs in again as a new, empty account.
        assert.deepEqual(await settingsOf(A), { emailAddress: "", frequency: EmailDigestFrequency.OFF, lastSentAt: undefined });
      });

      it("keeps each user's settings their own", async () => {
        const [ada, bob] = await newUsers(server, 2, "own");
        await server.clientsFor(ada!, protocol).notifications.setEmailDigestSettings({ emailAddress: "ada@example.com", frequency: EmailDigestFrequency.DAILY });
        assert.deepEqual(await settingsOf(server.clientsFor(bob!, protocol)), { emailAddress: "", frequency: EmailDigestFrequency.OFF, lastSentAt: undefined });
      });

      it("refuses bad input with INVALID_ARGUMENT and writes nothing", async () => {
        const [ada] = await newUsers(server, 1, "bad");
        const A = server.clientsFor(ada!, protocol);
        await A.notifications.setEmailDigestSettings({ emailAddress: "ada@example.com", frequency: EmailDigestFrequency.DAILY });
        const before = await settingsOf(A);

        await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress: "x@example.com", frequency: EmailDigestFrequency.UNSPECIFIED }), "frequency");
        await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress: "x@example.com", frequency: 99 as EmailDigestFrequency }), "frequency");
        await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress: "", frequency: EmailDigestFrequency.HOURLY }), "email_address");
        await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress: "", frequency: EmailDigestFrequency.DAILY }), "email_address");
        const badAddresses = [
          "no-at-sign",
          "@example.com",
          "ada@",
          "ada@@example.com",
          "ada lovelace@example.com",
          "ada@exa mple.com",
          ".ada@example.com",
          "ada..l@example.com",
          "ada@-example.com",
          "ada@example..com",
          "<ada@example.com>",
          "Ada <ada@example.com>",
          "ada@example.com\r\nBcc: eve@example.com",
          "ada@example.com,eve@example.com",
          "adä@example.com",
          `${"a".repeat(65)}@example.com`,
          addressOfLength(255),
        ];
        assert.equal(badAddresses.at(-1)!.length, 255);
        for (const emailAddress of badAddresses) {
          await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress, frequency: EmailDigestFrequency.HOURLY }), "email_address");
          // OFF with an address still checks it: a stored address is always usable.
          await expectInvalidArgument(A.notifications.setEmailDigestSettings({ emailAddress, frequency: EmailDigestFrequency.OFF }), "email_address");
        }
        assert.deepEqual(await settingsOf(A), before, "nothing was written");

        // 254 characters is the most, and fine.
        const longest = addressOfLength(254);
        assert.equal(longest.length, 254);
        await A.notifications.setEmailDigestSettings({ emailAddress: longest, frequency: EmailDigestFrequency.HOURLY });
        assert.equal((await settingsOf(A)).emailAddress, longest);
      });
    });
  }
});
