export { JobService } from "./job-service.ts";
