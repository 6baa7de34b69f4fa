export { createAuthInterceptor } from "./auth-interceptor.ts";
export { loadOrCreateDevSecret, devSecretPath } from "./dev-secret.ts";
export { createTokenVerifier, mintToken, MAX_USER_ID_LENGTH, type TokenVerifier } from "./token-verifier.ts";
export { callerKey, requireCaller, type Caller } from "./user-context.ts";
