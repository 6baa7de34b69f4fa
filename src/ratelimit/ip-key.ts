/**
 * The part of an address a per-IP bucket is keyed by: an IPv4 address whole, an IPv6 address by
 * its /64 prefix. One IPv6 subscriber is usually given a whole /64, so keying by the full
 * address would let one client rotate through 2^64 buckets.
 */
import net from "node:net";

export function ipBucketKey(ip: string): string {
  if (net.isIPv6(ip)) {
    const hextets = expandIpv6(ip);
    if (hextets) return `${hextets.slice(0, 4).join(":")}::/64`;
  }
  return ip;
}

/** The eight 16-bit groups of an IPv6 address, as lower-case hex without leading zeros. */
function expandIpv6(ip: string): string[] | null {
  let address = ip.toLowerCase();
  // A trailing dotted IPv4 part (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    address = address.slice(0, v4.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = address.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  return groups.map((group) => parseInt(group, 16).toString(16));
}
