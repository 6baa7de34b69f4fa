export { SocialService } from "./social-service.ts";
export { blockedDirectConversations, conversationUnavailable } from "./direct-block.ts";
