/**
 * The session: one object an app holds per signed-in device. It wires the generated Connect
 * clients, the conversation cache, the offline outbox, the feed and the ordering buffer
 * together, and routes content through the MessageCodec for encrypted conversations.
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { ConversationType, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { ConversationService } from "../../gen/parley/v1/conversation_service_pb.ts";
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import { EventService } from "../../gen/parley/v1/event_service_pb.ts";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { ListDirection, MessageService, SendMessageRequestSchema, type SendMessageRequest } from "../../gen/parley/v1/message_service_pb.ts";
import { SearchService } from "../../gen/parley/v1/search_service_pb.ts";
import { UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { PlainContentSchema, type MediaKey } from "../../gen/parley/e2e/v1/payload_pb.ts";
import type { BackoffOptions } from "./backoff.ts";
import { withBearerToken, type TokenProvider } from "./bearer-transport.ts";
import { ClientEventHub, type ClientEvent, type ClientEventListener } from "./client-events.ts";
import type { MessageCodec } from "./codec.ts";
import { Attachments } from "./attachments.ts";
import { MediaService } from "../../gen/parley/v1/media_service_pb.ts";
import { ConversationCache } from "./conversation-cache.ts";
import { FeedSync } from "./feed-sync.ts";
import { backoffDelay, sleep } from "./backoff.ts";
import { Gate } from "./gate.ts";
import { decodeMessage, type DecodedMessage } from "./message-decoder.ts";
import { OrderingBuffer } from "./ordering-buffer.ts";
import { Outbox, type PendingSend } from "./outbox.ts";
import { OutboxStore, type OutboxItem } from "./outbox-store.ts";
import { classifyFailure } from "./rpc-errors.ts";
import { searchMessages, type SearchFilters, type SearchResult } from "./search.ts";
import type { ClientStore } from "./storage.ts";
import { SyncState } from "./sync-state.ts";

/** Feed events the codec needs to see (keys follow devices and members). */
const CODEC_EVENTS = new Set<Event["kind"]["case"]>(["deviceChanged", "memberAdded", "memberRemoved", "toDeviceMessage"]);
/** After a resync, conversations at most this far behind are caught up message by message. */
const DEFAULT_RESYNC_CATCH_UP = 200;

export interface ParleyClientOptions {
  /** How to reach the server: createConnectTransport / createGrpcTransport (connect-node) or connect-web's. */
  transport: Transport;
  /** The bearer token, asked for before every request. */
  token: TokenProvider;
  /** Where the outbox, the feed cursor and positions (and the codec's keys) are kept. */
  store: ClientStore;
  /** Encrypts and decrypts encrypted conversations; without one they cannot be read or written. */
  codec?: MessageCodec;
  /** Retry pacing for the outbox and the feed. */
  backoff?: BackoffOptions;
  /** After resync_required, conversations this many messages behind or fewer are caught up (default 200). */
  resyncCatchUp?: number;
}

/** What to create. */
export interface CreateConversationOptions {
  /** The other members (one for a direct conversation). */
  memberIds: string[];
  /** GROUP when name is set or there is more than one other member, else DIRECT. */
  type?: ConversationType;
  name?: string;
  description?: string;
  encrypted?: boolean;
  blindSearch?: boolean;
}

/** What to send. */
export interface SendOptions {
  text: string;
  /** Encrypted media keys (encrypted conversations only). */
  media?: MediaKey[];
  replyToSeq?: bigint;
  /** User ids to mention. */
  mentions?: string[];
}

export class ParleyClient {
  readonly conversationsClient: Client<typeof ConversationService>;
  readonly messagesClient: Client<typeof MessageService>;
  readonly eventsClient: Client<typeof EventService>;
  readonly searchClient: Client<typeof SearchService>;
  readonly usersClient: Client<typeof UserService>;
  /** Files for encrypted conversations: upload before sending, download after decrypting. */
  readonly attachments: Attachments;

  readonly #codec: MessageCodec | undefined;
  readonly #hub = new ClientEventHub();
  readonly #cache: ConversationCache;
  readonly #sync: SyncState;
  readonly #buffer: OrderingBuffer;
  readonly #outbox: Outbox;
  readonly #feed: FeedSync;
  readonly #live = new Gate(false);
  readonly #resyncCatchUp: number;
  #userId: string | undefined;
  #running: { controller: AbortController; done: Promise<unknown> } | undefined;

  constructor(options: ParleyClientOptions) {
    const transport = withBearerToken(options.transport, options.token);
    this.conversationsClient = createClient(ConversationService, transport);
    this.messagesClient = createClient(MessageService, transport);
    this.eventsClient = createClient(EventService, transport);
    this.searchClient = createClient(SearchService, transport);
    this.usersClient = createClient(UserService, transport);
    this.attachments = new Attachments(createClient(MediaService, transport));
    this.#codec = options.codec;
    this.#resyncCatchUp = options.resyncCatchUp ?? DEFAULT_RESYNC_CATCH_UP;
    this.#cache = new ConversationCache(this.conversationsClient, () => this.#userId);
    this.#sync = new SyncState(options.store);
    this.#buffer = new OrderingBuffer({
      positions: this.#sync,
      fetchAfter: async (conversationId, afterSeq) =>
        (await this.messagesClient.listMessages({ conversationId, direction: ListDirection.FORWARD, startSeq: afterSeq, pageSize: 200 })).messages,
    });
    this.#outbox = new Outbox({
      store: new OutboxStore(options.store),
      gate: this.#live,
      backoff: options.backoff,
      buildRequest: (item, fresh) => this.#buildRequest(item, fresh),
      send: async (request, signal) => {
        const res = await this.messagesClient.sendMessage(request, { signal });
        if (!res.message) throw new Error("SendMessage answered without the stored message");
        return res.message;
      },
      onSent: (item, message) => this.#hub.emit({ type: "sent", localId: item.clientMessageId, message }),
      onFailed: (item, reason) => this.#hub.emit({ type: "send_failed", localId: item.clientMessageId, conversationId: item.conversationId, reason }),
    });
    this.#feed = new FeedSync({
      subscribe: (cursor, signal) => this.eventsClient.subscribe({ cursor }, { signal, timeoutMs: 0 }),
      cursor: () => this.#sync.cursor(),
      saveCursor: (cursor) => this.#sync.setCursor(cursor),
      beforeConnect: async () => {
        await this.#ensureUser();
        await this.#codec?.syncInbox();
      },
      handleEvent: (event) => this.#handleEvent(event),
      resync: (reason) => this.#resync(reason),
      onLive: (live) => {
        // The outbox drains only while the feed is up, i.e. after the inbox was synced.
        if (live) this.#live.open();
        else this.#live.close();
        this.#hub.emit({ type: "connection", live });
      },
      onSkipped: (event, error) => this.#hub.emit({ type: "event_skipped", event, reason: error instanceof Error ? error.message : String(error) }),
      onRestricted: (restriction) => this.#hub.emit({ type: "restricted", restriction }),
      onSessionEnded: (byOperator) => this.#hub.emit({ type: "session_ended", byOperator }),
      backoff: options.backoff,
    });
  }

  /** Starts the feed and the outbox sender in the background. Idempotent. */
  start(): void {
    if (this.#running) return;
    const controller = new AbortController();
    const signal = controller.signal;
    const done = Promise.all([keepRunning((s) => this.#feed.run(s), signal), keepRunning((s) => this.#outbox.run(s), signal)]);
    this.#running = { controller, done };
  }

  /** Stops the background work; what is queued stays in the store for the next start. */
  async close(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (!running) return;
    running.controller.abort();
    this.#live.close();
    await running.done.catch(() => undefined);
  }

  /** True while the feed is connected (and the outbox drains). */
  get live(): boolean {
    return this.#live.isOpen;
  }

  /** The signed-in user's id (after the first call to the server). */
  async userId(): Promise<string> {
    return this.#ensureUser();
  }

  /** Listens for session events; returns the unsubscribe function. */
  on(listener: ClientEventListener): () => void {
    return this.#hub.on(listener);
  }

  /** Session events as an async iterable (from the moment of the call). */
  events(signal?: AbortSignal): AsyncIterableIterator<ClientEvent> {
    return this.#hub.iterate(signal);
  }

  /** Every conversation of the user, from the server; refreshes the cache. */
  conversations(): Promise<Conversation[]> {
    return this.#cache.reload();
  }

  /** One conversation, cached. */
  conversation(id: string, fresh = false): Promise<Conversation> {
    return this.#cache.get(id, fresh);
  }

  async createConversation(options: CreateConversationOptions): Promise<Conversation> {
    const type = options.type ?? (options.name || options.memberIds.length > 1 ? ConversationType.GROUP : ConversationType.DIRECT);
    const res = await this.conversationsClient.createConversation({
      type,
      memberIds: options.memberIds,
      name: options.name ?? "",
      description: options.description ?? "",
      encrypted: options.encrypted ?? false,
      blindSearch: options.blindSearch ?? false,
    });
    if (!res.conversation) throw new Error("CreateConversation returned no conversation");
    this.#cache.put(res.conversation);
    return res.conversation;
  }

  /**
   * Queues a message: it is in the durable outbox when this resolves (before any network
   * attempt) and `message` resolves once the server stored it, however many reconnects later.
   */
  send(conversationId: string, options: SendOptions): Promise<PendingSend> {
    return this.#outbox.enqueue(conversationId, {
      content: create(PlainContentSchema, { text: options.text, media: options.media ?? [] }),
      replyToSeq: options.replyToSeq,
      mentionUserIds: options.mentions ?? [],
    });
  }

  /** Sends not yet stored by the server, failed ones included, in the order they will go. */
  outbox(): Promise<OutboxItem[]> {
    return this.#outbox.entries();
  }

  /** Drops a failed send. */
  discardSend(localId: string): Promise<void> {
    return this.#outbox.discard(localId);
  }

  /** Queues a failed send again (same client_message_id, same place in the order). */
  retrySend(localId: string): Promise<void> {
    return this.#outbox.retry(localId);
  }

  /** The newest `limit` messages before `beforeSeq` (default: the newest), decoded, oldest first. */
  async history(conversationId: string, options: { limit?: number; beforeSeq?: bigint } = {}): Promise<DecodedMessage[]> {
    const conversation = await this.#cache.get(conversationId);
    const res = await this.messagesClient.listMessages({
      conversationId,
      direction: ListDirection.BACKWARD,
      pageSize: options.limit ?? 50,
      startSeq: options.beforeSeq ?? 0n,
    });
    const ordered = [...res.messages].sort((a, b) => (a.seq < b.seq ? -1 : 1));
    return Promise.all(ordered.map((m) => decodeMessage(conversation, m, this.#codec)));
  }

  /**
   * Replaces a message's text (encrypting it again for an encrypted conversation). Not queued:
   * an edit is only meaningful while the app shows the message, so failures go to the caller.
   */
  async edit(conversationId: string, seq: bigint, text: string): Promise<DecodedMessage> {
    for (let attempt = 0; ; attempt++) {
      const conversation = await this.#cache.get(conversationId, attempt > 0);
      try {
        const body = await this.#content(conversation, create(PlainContentSchema, { text }));
        const res = await this.messagesClient.editMessage({ conversationId, seq, content: body.content, searchTokens: body.searchTokens });
        return decodeMessage(conversation, res.message!, this.#codec);
      } catch (err) {
        if (attempt < 3 && classifyFailure(err) === "stale_epoch") continue;
        throw err;
      }
    }
  }

  /** Searches plain conversations by text and blind-search ones by tokens; newest first. */
  async search(query: string, filters: SearchFilters = {}): Promise<SearchResult[]> {
    return searchMessages(
      // Listed afresh: the cache holds only the conversations this session touched, and one
      // missing from it would be left out of the search (no blind queries, no text query).
      { search: this.searchClient, codec: this.#codec, conversations: () => this.#cache.reload() },
      query,
      filters,
    );
  }

  async #ensureUser(): Promise<string> {
    if (this.#userId) return this.#userId;
    const res = await this.usersClient.getMe({});
    this.#userId = res.user?.id ?? "";
    return this.#userId;
  }

  /** The body of a send or edit: text for a plain conversation, an envelope for an encrypted one. */
  async #content(conversation: Conversation, plain: ReturnType<typeof create<typeof PlainContentSchema>>): Promise<Pick<SendMessageRequest, "content" | "searchTokens">> {
    if (!conversation.encrypted) {
      if (plain.media.length > 0) throw new TypeError("media keys belong to encrypted conversations only");
      return { content: { case: "text", value: plain.text }, searchTokens: [] };
    }
    if (!this.#codec) throw new TypeError(`conversation ${conversation.id} is encrypted and this client has no codec`);
    const { envelope, searchTokens } = await this.#codec.encrypt(conversation, plain);
    return { content: { case: "envelope", value: envelope }, searchTokens: conversation.blindSearch ? searchTokens : [] };
  }

  async #buildRequest(item: OutboxItem, fresh: boolean): Promise<SendMessageRequest> {
    const conversation = await this.#cache.get(item.conversationId, fresh);
    const body = await this.#content(conversation, item.draft.content);
    return create(SendMessageRequestSchema, {
      conversationId: item.conversationId,
      clientMessageId: item.clientMessageId,
      content: body.content,
      searchTokens: body.searchTokens,
      replyToSeq: item.draft.replyToSeq,
      mentionUserIds: item.draft.mentionUserIds,
    });
  }

  async #handleEvent(event: Event): Promise<void> {
    if (this.#codec && CODEC_EVENTS.has(event.kind.case)) await this.#codec.onEvent(event);
    const changed = await this.#cache.apply(event);
    switch (event.kind.case) {
      case "messageCreated": {
        const message = event.kind.value.message;
        if (!message) return;
        const conversation = await this.#cache.get(message.conversationId).catch(() => undefined);
        for (const m of await this.#buffer.accept(message)) {
          this.#hub.emit({ type: "message", message: await decodeMessage(conversation, m, this.#codec) });
          await this.#buffer.delivered(m);
        }
        return;
      }
      case "messageEdited": {
        const message = event.kind.value.message;
        if (!message) return;
        const conversation = await this.#cache.get(message.conversationId).catch(() => undefined);
        this.#hub.emit({ type: "edited", message: await decodeMessage(conversation, message, this.#codec) });
        return;
      }
      case "messageDeleted":
        this.#hub.emit({ type: "deleted", conversationId: event.conversationId, seq: event.kind.value.messageSeq });
        return;
      default:
        if (changed && event.kind.case !== undefined) this.#hub.emit({ type: "conversation", conversation: changed });
        this.#hub.emit({ type: "event", event });
    }
  }

  /**
   * The feed could not resume: re-list conversations, hand over what each missed (when it is
   * not too much; otherwise skip ahead and let the app reload via history()), then tell the app.
   */
  async #resync(reason: string): Promise<void> {
    for (const conversation of await this.#cache.reload()) {
      const position = await this.#sync.get(conversation.id);
      if (position !== undefined && conversation.lastSeq - position > BigInt(this.#resyncCatchUp)) {
        await this.#buffer.skipTo(conversation.id, conversation.lastSeq);
        continue;
      }
      for (const m of await this.#buffer.catchUp(conversation.id, conversation.lastSeq)) {
        this.#hub.emit({ type: "message", message: await decodeMessage(conversation, m, this.#codec) });
        await this.#buffer.delivered(m);
      }
    }
    this.#hub.emit({ type: "resync", reason });
  }
}

/**
 * Restarts a background loop that failed (a store that threw, a bug in a listener path), so one
 * bad moment does not silently stop syncing for the rest of the session.
 */
async function keepRunning(loop: (signal: AbortSignal) => Promise<void>, signal: AbortSignal): Promise<void> {
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      await loop(signal);
    } catch {
      await sleep(backoffDelay(attempt, { initialMs: 1000 }), signal);
    }
  }
}
