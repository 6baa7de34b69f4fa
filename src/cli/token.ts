/**
 * `npm run token -- <user> [--admin] [--expires 24h]`: prints a bearer token for the
 * server's HS256 secret (JWT_SECRET, or the development secret in the data dir).
 */
import { parseArgs } from "node:util";
import { loadOrCreateDevSecret, mintToken } from "../auth/index.ts";
import { loadConfig } from "../config.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { admin: { type: "boolean", default: false }, expires: { type: "string", default: "24h" } },
});
const userId = positionals[0];
if (!userId) {
  console.error("usage: npm run token -- <user-id> [--admin] [--expires 24h]");
  process.exit(2);
}
const config = loadConfig();
if (config.jwt.jwksUrl !== null) {
  console.error("JWT_JWKS_URL is set: tokens come from your identity provider, not from here.");
  process.exit(2);
}
const secret = config.jwt.secret ?? (await loadOrCreateDevSecret(config.dataDir));
console.log(await mintToken({ secret, issuer: config.jwt.issuer, audience: config.jwt.audience, userId, admin: values.admin, expiresIn: values.expires }));
