/**
 * Authenticates every RPC except the standard health and reflection services, puts the
 * caller in the context values, and makes sure the caller has a user row (created on the
 * first authenticated call).
 */
import type { Interceptor } from "@connectrpc/connect";
import { UnauthenticatedError } from "../errors.ts";
import type { TokenVerifier } from "./token-verifier.ts";
import { callerKey } from "./user-context.ts";

/** Services anyone may call: load balancers and tools use them without a token. */
const PUBLIC_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** Whether a service is served without a token (health checks, reflection). */
export function isPublicService(typeName: string): boolean {
  return PUBLIC_SERVICES.has(typeName);
}

export interface AuthInterceptorOptions {
  verify: TokenVerifier;
  /** Creates the user row if this node has not seen the user yet. */
  ensureUser: (userId: string) => Promise<void>;
}

export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    const header = req.header.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) throw new UnauthenticatedError();
    const caller = await options.verify(match[1]);
    await options.ensureUser(caller.userId);
    req.contextValues.set(callerKey, caller);
    return next(req);
  };
}
