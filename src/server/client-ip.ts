/**
 * The client's IP address, put in the context values of every request (both the connect-node
 * adapter and the lean gRPC path), for the per-IP rate limits and for logs.
 *
 * By default it is the socket's remote address. Behind N trusted reverse proxies
 * (TRUST_PROXY_HOPS=N) each proxy appends the address it received the request from to
 * X-Forwarded-For, so the client is the N-th address counted from the right (the socket's
 * peer being the last proxy); what lies further left was written by the client and is not
 * trusted. With fewer addresses than hops, the left-most one is taken (as Express's
 * `trust proxy = N` does).
 */
import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import net from "node:net";

/** The address the request came from (IPv4 dotted, IPv6 compressed; "unknown" if the socket has none). */
export const clientIpKey = createContextKey<string>("unknown", { description: "client IP address" });

/** What both request kinds share: headers and the socket. */
interface NodeRequest {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly socket: { readonly remoteAddress?: string | undefined } | null;
}

/** Reads the client IP of a node request. */
export function createClientIpResolver(trustProxyHops: number): (req: NodeRequest) => string {
  return (req) => {
    const peer = normalize(req.socket?.remoteAddress);
    if (trustProxyHops === 0) return peer;
    const header = req.headers["x-forwarded-for"];
    const forwarded = (Array.isArray(header) ? header.join(",") : (header ?? ""))
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part !== "");
    if (forwarded.length === 0) return peer;
    // [peer, ...forwarded right to left]: the first `hops` entries are proxies we trust.
    const index = Math.min(trustProxyHops, forwarded.length) - 1;
    const candidate = normalize(stripPort(forwarded[forwarded.length - 1 - index]!));
    return candidate === "unknown" ? peer : candidate;
  };
}

/** Context values holding the client IP, for connect-node's and the lean path's `contextValues` option. */
export function createClientIpContextValues(trustProxyHops: number): (req: NodeRequest) => ContextValues {
  const resolve = createClientIpResolver(trustProxyHops);
  return (req) => {
    const values = createContextValues();
    values.set(clientIpKey, resolve(req));
    return values;
  };
}

/** An IPv4-mapped IPv6 address becomes plain IPv4; anything that is not an IP becomes "unknown". */
function normalize(address: string | undefined): string {
  if (!address) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  return net.isIP(address) ? address.toLowerCase() : "unknown";
}

/** "1.2.3.4:5678" → "1.2.3.4"; "[::1]:80" → "::1" (some proxies append the port). */
function stripPort(value: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(value);
  if (bracketed) return bracketed[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(value);
  return v4 ? v4[1]! : value;
}
