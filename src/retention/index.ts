export { RetentionPolicy, RetentionCutoff, type ConversationRetention } from "./retention-policy.ts";
export { parseRetention, toRetentionDuration, MIN_RETENTION_SECONDS, MAX_RETENTION_SECONDS } from "./retention-duration.ts";
export { RetentionSweeper, type RetentionSweeperOptions, type SweepResult } from "./retention-sweeper.ts";
export { deadlinesAt, findRetentionSettings } from "./retention-repository.ts";
