export { ConversationService } from "./conversation-service.ts";
