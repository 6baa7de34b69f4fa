/** The generated Connect clients the key manager talks to the server with. */
import type { Client } from "@connectrpc/connect";
import type { ConversationService } from "../../../gen/parley/v1/conversation_service_pb.ts";
import type { KeyService } from "../../../gen/parley/v1/key_service_pb.ts";
import type { MessageService } from "../../../gen/parley/v1/message_service_pb.ts";

export type KeyServiceClient = Client<typeof KeyService>;
export type ConversationServiceClient = Client<typeof ConversationService>;
export type MessageServiceClient = Client<typeof MessageService>;
