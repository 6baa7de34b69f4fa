/**
 * The NATS bus. Committed events are published to JetStream (Nats-Msg-Id = event id, so a
 * republished event is stored once) on subjects that every node also receives through a core
 * subscription for live delivery. Ephemeral signals use core NATS only and are never stored.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { headers as natsHeaders, type JetStreamClient, type MsgHdrs, type NatsConnection, type Subscription } from "nats";
import { EventSchema, type Event } from "../../gen/parley/v1/event_pb.ts";
import type { EphemeralRoute, EventBus } from "./event-bus.ts";
import type { StoredEvent } from "./event-log.ts";
import type { Subjects } from "./subjects.ts";

const POSITION = "Parley-Position";
const CONVERSATION = "Parley-Conversation";
const TARGET_USER = "Parley-Target-User";

export interface NatsBusOptions {
  connection: NatsConnection;
  subjects: Subjects;
  onError: (error: unknown, what: string) => void;
}

export function createNatsBus({ connection, subjects, onError }: NatsBusOptions): EventBus {
  const js: JetStreamClient = connection.jetstream();
  const subscriptions: Subscription[] = [];

  const subscribe = (subject: string, handle: (data: Uint8Array, headers: MsgHdrs | undefined) => void) => {
    const subscription = connection.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return onError(error, `subscription ${subject}`);
        try {
          handle(msg.data, msg.headers);
        } catch (cause) {
          onError(cause, `a message on ${msg.subject}`);
        }
      },
    });
    subscriptions.push(subscription);
    return () => subscription.unsubscribe();
  };

  return {
    async publish(events) {
      // Pipelined: all acks are awaited together, never one round trip per event.
      await Promise.all(
        events.map((stored) => {
          const h = natsHeaders();
          h.set(POSITION, stored.position.toString());
          if (stored.conversationId !== null) h.set(CONVERSATION, stored.conversationId);
          if (stored.targetUserId !== null) h.set(TARGET_USER, stored.targetUserId);
          return js.publish(subjects.event(stored.conversationId, stored.targetUserId), toBinary(EventSchema, stored.event), {
            msgID: stored.event.id,
            headers: h,
          });
        }),
      );
    },
    onEvent(handler) {
      return subscribe(subjects.allEvents, (data, h) => {
        const position = h?.get(POSITION);
        if (!position) return;
        handler({
          position: BigInt(position),
          conversationId: h?.get(CONVERSATION) || null,
          targetUserId: h?.get(TARGET_USER) || null,
          event: fromBinary(EventSchema, data),
        });
      });
    },
    publishEphemeral(route, event) {
      const h = natsHeaders();
      if ("conversationId" in route) h.set(CONVERSATION, route.conversationId);
      else h.set(TARGET_USER, route.userId);
      const subject = "conversationId" in route ? subjects.typing(route.conversationId) : subjects.presence(route.userId);
      connection.publish(subject, toBinary(EventSchema, event), { headers: h });
    },
    onEphemeral(handler) {
      return subscribe(subjects.allEphemeral, (data, h) => {
        const conversationId = h?.get(CONVERSATION);
        const userId = h?.get(TARGET_USER);
        const route: EphemeralRoute | null = conversationId ? { conversationId } : userId ? { userId } : null;
        if (route) handler(route, fromBinary(EventSchema, data));
      });
    },
    async close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
