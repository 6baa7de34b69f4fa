/**
 * CORS for browser clients (Connect-Web, gRPC-Web). Off unless CORS_ORIGINS is set; "*"
 * allows any origin. Uses the header lists Connect publishes for its protocols.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { cors } from "@connectrpc/connect";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

/** Applies CORS headers; returns true when it answered a preflight itself. */
export function createCorsHandler(origins: readonly string[]): (req: Req, res: Res) => boolean {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (origins.length === 0 || typeof origin !== "string" || (!any && !allowed.has(origin))) return false;
    res.setHeader("Access-Control-Allow-Origin", origin);
    res.setHeader("Vary", "Origin");
    res.setHeader("Access-Control-Expose-Headers", [...cors.exposedHeaders, "X-Request-Id"].join(", "));
    if (req.method !== "OPTIONS") return false;
    res.setHeader("Access-Control-Allow-Methods", cors.allowedMethods.join(", "));
    res.setHeader("Access-Control-Allow-Headers", [...cors.allowedHeaders, "Authorization", "X-Request-Id", "X-Parley-Device-Id", "X-Parley-Client-Version"].join(", "));
    res.setHeader("Access-Control-Max-Age", "7200");
    res.statusCode = 204;
    res.end();
    return true;
  };
}
