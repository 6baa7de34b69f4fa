/** Registers every service implementation on the Connect router. */
import type { ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health } from "../gen/grpc/health/v1/health_pb.ts";
import { ConversationService as ConversationServiceDesc, file_parley_v1_conversation_service } from "../gen/parley/v1/conversation_service_pb.ts";
import { EventService as EventServiceDesc, file_parley_v1_event_service } from "../gen/parley/v1/event_service_pb.ts";
import { MessageService as MessageServiceDesc, file_parley_v1_message_service } from "../gen/parley/v1/message_service_pb.ts";
import { SearchService as SearchServiceDesc, file_parley_v1_search_service } from "../gen/parley/v1/search_service_pb.ts";
import { NotificationService as NotificationServiceDesc, file_parley_v1_notification_service } from "../gen/parley/v1/notification_service_pb.ts";
import { UserService as UserServiceDesc, file_parley_v1_user_service } from "../gen/parley/v1/user_service_pb.ts";
import { SocialService as SocialServiceDesc, file_parley_v1_social_service } from "../gen/parley/v1/social_service_pb.ts";
import { MediaService as MediaServiceDesc, file_parley_v1_media_service } from "../gen/parley/v1/media_service_pb.ts";
import { StoryService as StoryServiceDesc, file_parley_v1_story_service } from "../gen/parley/v1/story_service_pb.ts";
import { KeyService as KeyServiceDesc, file_parley_v1_key_service } from "../gen/parley/v1/key_service_pb.ts";
import { ReportService as ReportServiceDesc, file_parley_v1_report_service } from "../gen/parley/v1/report_service_pb.ts";
import { AdminService as AdminServiceDesc, file_parley_v1_admin_service } from "../gen/parley/v1/admin_service_pb.ts";
import { ConnectionService as ConnectionServiceDesc, file_parley_v1_connection_service } from "../gen/parley/v1/connection_service_pb.ts";
import { JobService as JobServiceDesc, file_parley_v1_job_service } from "../gen/parley/v1/job_service_pb.ts";
import { AnalyticsService as AnalyticsServiceDesc, file_parley_v1_analytics_service } from "../gen/parley/v1/analytics_service_pb.ts";
import type { AnalyticsService } from "./analytics/index.ts";
import type { ConnectionService } from "./connections/index.ts";
import type { JobService } from "./jobs/index.ts";
import type { AdminService, ReportService } from "./moderation/index.ts";
import type { KeyService } from "./keys/index.ts";
import type { MediaService } from "./media/index.ts";
import type { SocialService } from "./social/index.ts";
import type { StoryService } from "./stories/index.ts";
import type { ConversationService } from "./conversations/index.ts";
import type { EventService } from "./feed/index.ts";
import type { MessageService } from "./messages/index.ts";
import type { SearchService } from "./search/index.ts";
import type { NotificationService } from "./notifications/index.ts";
import { registerHealth, type HealthStatus } from "./standard/health.ts";
import { createFileRegistryOf, registerReflection } from "./standard/reflection.ts";
import type { UserService } from "./users/index.ts";

export interface Services {
  users: UserService;
  conversations: ConversationService;
  messages: MessageService;
  events: EventService;
  search: SearchService;
  notifications: NotificationService;
  social: SocialService;
  media: MediaService;
  stories: StoryService;
  keys: KeyService;
  reports: ReportService;
  admin: AdminService;
  connections: ConnectionService;
  jobs: JobService;
  analytics: AnalyticsService;
  health: HealthStatus;
}

/** The services reflection lists, by their fully qualified names. */
const PUBLIC_API = [UserServiceDesc, ConversationServiceDesc, MessageServiceDesc, EventServiceDesc, NotificationServiceDesc, SocialServiceDesc, MediaServiceDesc, StoryServiceDesc, SearchServiceDesc, KeyServiceDesc, ReportServiceDesc, AdminServiceDesc, ConnectionServiceDesc, JobServiceDesc, AnalyticsServiceDesc];

export function createRoutes(services: Services): (router: ConnectRouter) => void {
  const registry = createFileRegistryOf(
    file_parley_v1_user_service,
    file_parley_v1_conversation_service,
    file_parley_v1_message_service,
    file_parley_v1_event_service,
    file_parley_v1_search_service,
    file_parley_v1_notification_service,
    file_parley_v1_social_service,
    file_parley_v1_media_service,
    file_parley_v1_story_service,
    file_parley_v1_key_service,
    file_parley_v1_report_service,
    file_parley_v1_admin_service,
    file_parley_v1_connection_service,
    file_parley_v1_job_service,
    file_parley_v1_analytics_service,
    file_grpc_health_v1_health,
  );
  return (router) => {
    router.service(UserServiceDesc, services.users);
    router.service(ConversationServiceDesc, services.conversations);
    router.service(MessageServiceDesc, services.messages);
    router.service(EventServiceDesc, services.events);
    router.service(SearchServiceDesc, services.search);
    router.service(NotificationServiceDesc, services.notifications);
    router.service(SocialServiceDesc, services.social);
    router.service(MediaServiceDesc, services.media);
    router.service(StoryServiceDesc, services.stories);
    router.service(KeyServiceDesc, services.keys);
    router.service(ReportServiceDesc, services.reports);
    router.service(AdminServiceDesc, services.admin);
    router.service(ConnectionServiceDesc, services.connections);
    router.service(JobServiceDesc, services.jobs);
    router.service(AnalyticsServiceDesc, services.analytics);
    registerHealth(router, services.health);
    registerReflection(router, registry, [...PUBLIC_API.map((s) => s.typeName), "grpc.health.v1.Health"]);
  };
}
