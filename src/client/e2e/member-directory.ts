/**
 * Who is in a conversation now, cached until a member_added or member_removed event. Sender
 * keys go to these users' devices, and key material is accepted only from them.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ConversationType, type Conversation } from "../../../gen/parley/v1/conversation_pb.ts";
import type { ConversationServiceClient } from "./services.ts";

const MEMBERS_PAGE_SIZE = 500;

export class MemberDirectory {
  readonly #conversations: ConversationServiceClient;
  readonly #ownUserId: string;
  readonly #memberIds = new Map<string, string[]>();

  constructor(conversations: ConversationServiceClient, ownUserId: string) {
    this.#conversations = conversations;
    this.#ownUserId = ownUserId;
  }

  /** The conversation's members; a DIRECT one needs no call. */
  async membersOf(conversation: Conversation): Promise<string[]> {
    if (conversation.type === ConversationType.DIRECT) return [this.#ownUserId, conversation.directPeerId];
    return this.membersById(conversation.id);
  }

  /**
   * The members of a conversation known by id only. A conversation the server does not show
   * this user (NOT_FOUND: the user left or was removed) has, as far as it can know, no members:
   * nothing is accepted from or sent to anyone for it.
   */
  async membersById(conversationId: string): Promise<string[]> {
    const cached = this.#memberIds.get(conversationId);
    if (cached !== undefined) return cached;
    const memberIds: string[] = [];
    let pageToken = "";
    do {
      const page = await this.#listMembers(conversationId, pageToken);
      if (page === undefined) return [];
      memberIds.push(...page.members.map((member) => member.userId));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    this.#memberIds.set(conversationId, memberIds);
    return memberIds;
  }

  /** True when the user is a member now; a miss refetches once, as they may have just joined. */
  async isMember(conversationId: string, userId: string): Promise<boolean> {
    if ((await this.membersById(conversationId)).includes(userId)) return true;
    this.invalidate(conversationId);
    return (await this.membersById(conversationId)).includes(userId);
  }

  async #listMembers(conversationId: string, pageToken: string) {
    try {
      return await this.#conversations.listMembers({ conversationId, pageSize: MEMBERS_PAGE_SIZE, pageToken });
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.NotFound) return undefined;
      throw error;
    }
  }

  /** Forgets a conversation's members. */
  invalidate(conversationId: string): void {
    this.#memberIds.delete(conversationId);
  }
}
