/**
 * Rate limits no test suite or benchmark reaches, as server environment: the checks still run on
 * every call (so suites and benches pay for and exercise them), but storms of thousands of writes
 * from one user and one address (127.0.0.1) are never refused.
 */
export const UNREACHABLE_RATE_LIMITS_ENV: Readonly<Record<string, string>> = {
  RATE_LIMITS: "on",
  RATE_LIMIT_USER_PER_SECOND: "1000000",
  RATE_LIMIT_USER_BURST: "1000000",
  RATE_LIMIT_IP_PER_SECOND: "1000000",
  RATE_LIMIT_IP_BURST: "1000000",
  RATE_LIMIT_AUTH_FAILURES_PER_SECOND: "1000000",
  RATE_LIMIT_AUTH_FAILURES_BURST: "1000000",
};
