export { AdminService, type AdminServiceOptions } from "./admin-service.ts";
export { ReportService } from "./report-service.ts";
export { RestrictionCache, type Restriction } from "./restriction-cache.ts";
export { createRestrictionInterceptor, AccountRestrictedError } from "./restriction-interceptor.ts";
