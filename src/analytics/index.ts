export { AnalyticsService } from "./analytics-service.ts";
