export { createAuthInterceptor, isPublicService } from "./auth-interceptor.ts";
export { loadOrCreateDevSecret, devSecretPath } from "./dev-secret.ts";
export { createTokenVerifier, mintToken, MAX_USER_ID_LENGTH, type TokenVerifier } from "./token-verifier.ts";
export { callerKey, isRateLimitExempt, requireCaller, ROLES, type Caller, type Role } from "./user-context.ts";
