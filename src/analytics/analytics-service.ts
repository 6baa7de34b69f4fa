/** AnalyticsService: usage rollups (placeholder until analytics land). */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { AnalyticsService as AnalyticsServiceDesc } from "../../gen/parley/v1/analytics_service_pb.ts";

export class AnalyticsService implements ServiceImpl<typeof AnalyticsServiceDesc> {
  async getConversationAnalytics(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async getStoryAnalytics(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async getDeploymentAnalytics(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async rebuildAnalytics(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
}
