/**
 * The conversations the user is in, as last seen. Sends need a conversation's `encrypted` flag
 * and current `key_epoch` without a round trip each time, so they are cached here and kept
 * fresh from feed events (and re-read when the server says the epoch is stale).
 */
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import type { Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import type { ConversationService } from "../../gen/parley/v1/conversation_service_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";

export class ConversationCache {
  readonly #client: Client<typeof ConversationService>;
  readonly #byId = new Map<string, Conversation>();
  readonly #userId: () => string | undefined;

  /** `userId` tells which member_removed events mean "I left" (undefined: not known yet). */
  constructor(client: Client<typeof ConversationService>, userId: () => string | undefined) {
    this.#client = client;
    this.#userId = userId;
  }

  /** Every conversation from the server (all pages); replaces the cache. */
  async reload(): Promise<Conversation[]> {
    const all: Conversation[] = [];
    let pageToken = "";
    do {
      const res = await this.#client.listConversations({ pageSize: 100, pageToken });
      all.push(...res.conversations);
      pageToken = res.nextPageToken;
    } while (pageToken);
    this.#byId.clear();
    for (const c of all) this.#byId.set(c.id, c);
    return all;
  }

  /** What the cache holds, most recently active first. */
  cached(): Conversation[] {
    return [...this.#byId.values()].sort((a, b) => Number((b.lastActivityAt?.seconds ?? 0n) - (a.lastActivityAt?.seconds ?? 0n)));
  }

  /**
   * Reads the conversation again for an event about it; undefined (and forgotten) when the
   * user is no longer a member: a replayed feed still carries events of conversations the
   * user was removed from since.
   */
  async #reread(id: string): Promise<Conversation | undefined> {
    try {
      return await this.get(id, true);
    } catch (error) {
      if (ConnectError.from(error).code !== Code.NotFound) throw error;
      this.#byId.delete(id);
      return undefined;
    }
  }

  /** The conversation, from the cache unless `fresh` or unknown. */
  async get(id: string, fresh = false): Promise<Conversation> {
    const hit = this.#byId.get(id);
    if (hit && !fresh) return hit;
    const res = await this.#client.getConversation({ conversationId: id });
    if (!res.conversation) throw new Error(`GetConversation ${id} returned no conversation`);
    this.#byId.set(id, res.conversation);
    return res.conversation;
  }

  put(conversation: Conversation): void {
    this.#byId.set(conversation.id, conversation);
  }

  /**
   * Keeps the cache in step with a feed event. Cheap changes are applied in place; membership
   * and device changes re-read the conversation (member count, epoch, my role may all move).
   * Returns the updated conversation when it changed, undefined when the event did not touch it.
   */
  async apply(event: Event): Promise<Conversation | undefined> {
    const id = event.conversationId;
    if (!id) return undefined;
    const known = this.#byId.get(id);
    switch (event.kind.case) {
      case "messageCreated": {
        const m = event.kind.value.message;
        if (!known || !m) return undefined;
        if (m.seq > known.lastSeq) known.lastSeq = m.seq;
        if (event.createdAt) known.lastActivityAt = event.createdAt;
        return known;
      }
      case "conversationUpdated":
        if (!known) return this.#reread(id);
        known.name = event.kind.value.name;
        known.description = event.kind.value.description;
        return known;
      case "memberRemoved":
        if (event.kind.value.userId === this.#userId()) {
          this.#byId.delete(id);
          return undefined;
        }
        return this.#reread(id);
      case "memberAdded":
      case "memberRoleChanged":
      case "deviceChanged":
        return this.#reread(id);
      default:
        return undefined;
    }
  }
}
