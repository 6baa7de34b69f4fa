/**
 * `npm run token -- <user> [--operator] [--service] [--expires 24h]`: prints a bearer token for
 * the server's HS256 secret (JWT_SECRET, or the development secret in the data dir).
 * --operator grants the operator role (AdminService, no rate limits); --service marks a
 * service account such as a moderation bot (no rate limits).
 */
import { parseArgs } from "node:util";
import { loadOrCreateDevSecret, mintToken, type Role } from "../auth/index.ts";
import { loadConfig } from "../config.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    operator: { type: "boolean", default: false },
    service: { type: "boolean", default: false },
    expires: { type: "string", default: "24h" },
  },
});
const userId = positionals[0];
if (!userId) {
  console.error("usage: npm run token -- <user-id> [--operator] [--service] [--expires 24h]");
  process.exit(2);
}
const config = loadConfig();
if (config.jwt.jwksUrl !== null) {
  console.error("JWT_JWKS_URL is set: tokens come from your identity provider, not from here.");
  process.exit(2);
}
const secret = config.jwt.secret ?? (await loadOrCreateDevSecret(config.dataDir));
const roles: Role[] = [...(values.operator ? ["operator" as const] : []), ...(values.service ? ["service" as const] : [])];
console.log(await mintToken({ secret, issuer: config.jwt.issuer, audience: config.jwt.audience, userId, roles, expiresIn: values.expires }));
