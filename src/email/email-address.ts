/**
 * The syntax check for digest addresses: deliberately plain (RFC 5321's "dot-atom" local part and
 * an ASCII host name), because an address we accept ends up in an SMTP envelope and a header;
 * quoted local parts, comments and IP-literal hosts are refused rather than escaped.
 */

/** The longest address SMTP can carry in a path (RFC 5321 §4.5.3.1.3, minus the angle brackets). */
export const MAX_EMAIL_ADDRESS_LENGTH = 254;

const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why the address is unusable, or null when it is fine. */
export function emailAddressProblem(address: string): string | null {
  if (address.length > MAX_EMAIL_ADDRESS_LENGTH) return `must be at most ${MAX_EMAIL_ADDRESS_LENGTH} characters`;
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return "must look like name@example.com";
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64 || !LOCAL.test(local)) return "has an invalid part before the @";
  if (domain.length > 253 || !domain.split(".").every((label) => LABEL.test(label))) return "has an invalid domain";
  return null;
}
