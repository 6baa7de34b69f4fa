/**
 * The two interceptors of the rate limits, around the auth interceptor:
 *
 *   observability → auth-failure limit → auth → (restriction) → write limit → service
 *
 * - The auth-failure limit wraps authentication: a call that fails it (missing, invalid or
 *   expired token) takes a token from its IP's auth-failure bucket; when there is none left the
 *   call is refused with RESOURCE_EXHAUSTED instead, and until the retry time this node refuses
 *   that IP's calls before even verifying their token, so guessing tokens is throttled.
 * - The write limit runs after authentication (it needs the caller) on every RPC that is not
 *   NO_SIDE_EFFECTS (isReadOnly), Subscribe included: one token from the user's bucket and one
 *   from the IP's. Operators and service accounts are never limited; reads never are.
 * A refused call never reaches the service, so it writes nothing.
 */
import type { Interceptor } from "@connectrpc/connect";
import { callerKey, isPublicService, isRateLimitExempt } from "../auth/index.ts";
import { UnauthenticatedError } from "../errors.ts";
import { clientIpKey } from "../server/client-ip.ts";
import { isReadOnly } from "../server/rpc-kind.ts";
import type { RateLimiter } from "./rate-limiter.ts";

/** Goes right before the auth interceptor (it watches authentication fail). */
export function createAuthFailureLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    if (isPublicService(req.service.typeName)) return next(req);
    const ip = req.contextValues.get(clientIpKey);
    const wait = limiter.authRetryAfter(ip);
    if (wait > 0) throw limiter.refusedAuth(wait);
    try {
      return await next(req);
    } catch (error) {
      if (error instanceof UnauthenticatedError) await limiter.chargeAuthFailure(ip);
      throw error;
    }
  };
}

/** Goes after the auth interceptor (and the restriction interceptor): it needs the caller. */
export function createWriteLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    if (isReadOnly(req.method)) return next(req);
    const caller = req.contextValues.get(callerKey);
    if (caller === undefined || isRateLimitExempt(caller)) return next(req);
    await limiter.checkWrite(caller.userId, req.contextValues.get(clientIpKey));
    return next(req);
  };
}
