export { SocialService } from "./social-service.ts";
export { conversationUnavailable, findBlockedDirectConversations } from "./direct-block.ts";
