export { EventService, type FeedMemberships } from "./event-service.ts";
export { FeedHub } from "./feed-hub.ts";
