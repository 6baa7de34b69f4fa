/** Email digest settings: row ⇄ protobuf. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { EmailDigestFrequency, EmailDigestSettingsSchema, type EmailDigestSettings } from "../../gen/parley/v1/notification_pb.ts";
import { Frequency, type DigestSettingsRow } from "./digest-settings-repository.ts";

const TO_PROTO: Record<number, EmailDigestFrequency> = {
  [Frequency.OFF]: EmailDigestFrequency.OFF,
  [Frequency.HOURLY]: EmailDigestFrequency.HOURLY,
  [Frequency.DAILY]: EmailDigestFrequency.DAILY,
};

/** The stored frequency for a requested one; null for UNSPECIFIED or an unknown value. */
export function fromFrequency(frequency: EmailDigestFrequency): number | null {
  switch (frequency) {
    case EmailDigestFrequency.OFF:
      return Frequency.OFF;
    case EmailDigestFrequency.HOURLY:
      return Frequency.HOURLY;
    case EmailDigestFrequency.DAILY:
      return Frequency.DAILY;
    default:
      return null;
  }
}

/** The settings as the API shows them; a user who never set any is OFF with no address. */
export function toDigestSettings(row: DigestSettingsRow | undefined): EmailDigestSettings {
  if (!row) return create(EmailDigestSettingsSchema, { emailAddress: "", frequency: EmailDigestFrequency.OFF });
  return create(EmailDigestSettingsSchema, {
    emailAddress: row.email_address,
    frequency: TO_PROTO[row.frequency] ?? EmailDigestFrequency.OFF,
    ...(row.last_sent_at && { lastSentAt: timestampFromDate(row.last_sent_at) }),
  });
}
