/**
 * How events travel between nodes. Two implementations: NATS (JetStream for committed
 * events, core NATS for live fan-out and ephemeral signals) and an in-process bus for the
 * embedded single-node mode. The code above this interface is the same for both.
 */
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { StoredEvent } from "./event-log.ts";

export interface EventBus {
  /**
   * Publishes committed events. Resolves once the bus has them (JetStream acked); a failure
   * loses nothing, because the feed hubs and the relay fill holes from PostgreSQL.
   */
  publish(events: readonly StoredEvent[]): Promise<void>;
  /** Receives every committed event published by any node, in no guaranteed order. */
  onEvent(handler: (event: StoredEvent) => void): () => void;
  /** Publishes an ephemeral event (typing, presence) for the members of a conversation or for a user. */
  publishEphemeral(route: EphemeralRoute, event: Event): void;
  /** Receives every ephemeral event. */
  onEphemeral(handler: (route: EphemeralRoute, event: Event) => void): () => void;
  close(): Promise<void>;
}

/** Who an ephemeral event is for. */
export type EphemeralRoute = { conversationId: string } | { userId: string };
