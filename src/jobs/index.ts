export { createJobs, type Jobs, type JobsOptions } from "./jobs.ts";
export { JobService } from "./job-service.ts";
export { Kind as JobKindNumber, Status as JobStatusNumber } from "./job-repository.ts";
export { findActiveOfKind, findJob, pendingChunkNumbers, type JobRow } from "./job-repository.ts";
