/** What the email digest tests share: the digest timing they run with, users with addresses, waiting. */
import { EmailDigestFrequency } from "../../gen/parley/v1/notification_pb.ts";
import type { Clients, RemoteServer } from "../helpers/test-server.ts";
import { newUsers } from "../helpers/test-server.ts";
import type { ReceivedMail, SmtpTestServer } from "../helpers/smtp.ts";

/** Seconds: missed after 2 s unread, a sweep every second, HOURLY digests at most every 4 s. */
export const GRACE_SECONDS = 2;
export const HOURLY_SECONDS = 4;

/** The server environment for digests through `smtp`, with the short test timing. */
export function digestEnv(smtp: SmtpTestServer): Record<string, string> {
  return {
    SMTP_URL: smtp.url,
    EMAIL_DIGEST_GRACE_SECONDS: String(GRACE_SECONDS),
    EMAIL_DIGEST_SWEEP_SECONDS: "1",
    EMAIL_DIGEST_HOURLY_SECONDS: String(HOURLY_SECONDS),
  };
}

export function addressOf(userId: string): string {
  return `${userId}@example.com`;
}

export interface Person {
  id: string;
  clients: Clients;
  address: string;
}

/** New users with display names ("Ada 1f2e…"), each with HOURLY digests to `<id>@example.com` unless `frequency` says otherwise. */
export async function peopleWithDigests(server: RemoteServer, count: number, frequency: EmailDigestFrequency = EmailDigestFrequency.HOURLY): Promise<Person[]> {
  const ids = await newUsers(server, count, "mail");
  return Promise.all(
    ids.map(async (id) => {
      const clients = server.clientsFor(id, "connect");
      await clients.users.updateProfile({ displayName: `Name of ${id}` });
      await clients.notifications.setEmailDigestSettings({ emailAddress: frequency === EmailDigestFrequency.OFF ? "" : addressOf(id), frequency });
      return { id, clients, address: addressOf(id) };
    }),
  );
}

/** The mails delivered to the address so far. */
export function mailsTo(smtp: SmtpTestServer, address: string): ReceivedMail[] {
  return smtp.mails().filter((m) => m.to.includes(address.toLowerCase()));
}
