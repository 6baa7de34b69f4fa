/**
 * Verifies bearer JWTs with jose. The algorithm is pinned (HS256 for a shared secret; the
 * asymmetric ones a JWKS serves otherwise) so a token can never pick its own algorithm, and
 * issuer and audience are always checked.
 */
import { createRemoteJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from "jose";
import { UnauthenticatedError } from "../errors.ts";
import { ROLES, type Caller, type Role } from "./user-context.ts";

export interface TokenVerifierOptions {
  secret: string | null;
  jwksUrl: string | null;
  issuer: string;
  audience: string;
}

/** Longest user id accepted from a token subject. */
export const MAX_USER_ID_LENGTH = 128;

export type TokenVerifier = (token: string) => Promise<Caller>;

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const verifyOptions = { issuer: options.issuer, audience: options.audience };
  let verify: (token: string) => ReturnType<typeof jwtVerify>;
  if (options.secret !== null) {
    const key = new TextEncoder().encode(options.secret);
    verify = (token) => jwtVerify(token, key, { ...verifyOptions, algorithms: ["HS256"] });
  } else if (options.jwksUrl !== null) {
    const jwks: JWTVerifyGetKey = createRemoteJWKSet(new URL(options.jwksUrl));
    verify = (token) => jwtVerify(token, jwks, { ...verifyOptions, algorithms: ["RS256", "ES256", "EdDSA"] });
  } else {
    throw new Error("a JWT secret or a JWKS URL is required");
  }
  // Clients send the same token on every call; verifying it costs ~100 µs of CPU each time,
  // so a verified token is remembered until it expires (at most CACHE_TTL_MS).
  const verified = new Map<string, { caller: Caller; until: number }>();
  return async (token) => {
    const now = Date.now();
    const hit = verified.get(token);
    if (hit && hit.until > now) return hit.caller;
    let payload;
    try {
      ({ payload } = await verify(token));
    } catch {
      throw new UnauthenticatedError("the bearer token is invalid or expired");
    }
    const sub = payload.sub;
    if (typeof sub !== "string" || sub === "" || sub.length > MAX_USER_ID_LENGTH || /[\s\u0000-\u001f]/.test(sub)) {
      throw new UnauthenticatedError("the bearer token has no usable subject");
    }
    const roles = rolesOf(payload.roles);
    const caller: Caller = { userId: sub, operator: roles.has("operator"), service: roles.has("service") };
    if (verified.size >= CACHE_MAX_TOKENS) verified.clear();
    const expiresAt = typeof payload.exp === "number" ? payload.exp * 1000 : now;
    verified.set(token, { caller, until: Math.min(expiresAt, now + CACHE_TTL_MS) });
    return caller;
  };
}

/** The known roles of a `roles` claim; anything that is not an array of strings grants none. */
function rolesOf(claim: unknown): Set<Role> {
  if (!Array.isArray(claim)) return new Set();
  return new Set(ROLES.filter((role) => claim.includes(role)));
}

/** How long a verified token is trusted without checking it again. */
const CACHE_TTL_MS = 60_000;
/** Tokens remembered at most; the cache starts over beyond that (bounds memory). */
const CACHE_MAX_TOKENS = 50_000;

export interface MintOptions {
  secret: string;
  issuer: string;
  audience: string;
  userId: string;
  roles?: readonly Role[];
  expiresIn?: string;
}

/** Signs an HS256 token, for `npm run token` and tests. */
export async function mintToken(options: MintOptions): Promise<string> {
  return new SignJWT(options.roles && options.roles.length > 0 ? { roles: [...options.roles] } : {})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.userId)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "24h")
    .sign(new TextEncoder().encode(options.secret));
}
