export { AnalyticsService, type AnalyticsServiceOptions } from "./analytics-service.ts";
export { createAnalyticsSpec, prepareAnalytics, rebuildAnalytics, type AnalyticsConsumerOptions } from "./analytics-consumer.ts";
