/**
 * The NATS bus. Committed events are published onto the events stream's subjects
 * (Nats-Msg-Id = event id, so a republished event is stored once), which every node also
 * receives through a core subscription for live delivery. Ephemeral signals use core NATS
 * only and are never stored.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { headers as natsHeaders, type MsgHdrs, type NatsConnection, type Subscription } from "nats";
import { EventSchema } from "../../gen/parley/v1/event_pb.ts";
import type { EventBus } from "./event-bus.ts";
import { ephemeralHeaders, ephemeralRoute, eventHeaders, receiveStoredEvent } from "./event-wire.ts";
import type { Subjects } from "./subjects.ts";

/** JetStream's de-duplication header: a republished event is stored once. */
const MSG_ID = "Nats-Msg-Id";

export interface NatsBusOptions {
  connection: NatsConnection;
  subjects: Subjects;
  onError: (error: unknown, what: string) => void;
}

/** NATS headers from a plain map. */
export function toNatsHeaders(values: ReadonlyMap<string, string>): MsgHdrs {
  const h = natsHeaders();
  for (const [name, value] of values) h.set(name, value);
  return h;
}

/** A plain map from NATS headers (empty when there are none). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Map<string, string> {
  const values = new Map<string, string>();
  if (h) for (const name of h.keys()) values.set(name, h.get(name));
  return values;
}

export function createNatsBus({ connection, subjects, onError }: NatsBusOptions): EventBus {
  const subscriptions: Subscription[] = [];

  const subscribe = (subject: string, handle: (data: Uint8Array, headers: Map<string, string>) => void) => {
    const subscription = connection.subscribe(subject, {
      callback: (error, msg) => {
        if (error) return onError(error, `subscription ${subject}`);
        try {
          handle(msg.data, fromNatsHeaders(msg.headers));
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
      // A core publish onto the stream's subject: JetStream stores it (once per Nats-Msg-Id)
      // and every node's live subscription receives it. No PubAck is awaited: nothing would act
      // on one (a lost event is found by the feed hubs' hole check and republished by the relay
      // from PostgreSQL), and waiting for one cost about a tenth of a node's CPU under a send
      // storm (a request, a reply subscription, a timer and two Error objects per event).
      for (const stored of events) {
        const headers = eventHeaders(stored);
        headers.set(MSG_ID, stored.event.id);
        connection.publish(subjects.event(stored), stored.payload, { headers: toNatsHeaders(headers) });
      }
    },
    onEvent(handler) {
      return subscribe(subjects.allEvents, (data, headers) => handler(receiveStoredEvent(data, headers)));
    },
    publishEphemeral(route, event) {
      const subject = "conversationId" in route ? subjects.typing(route.conversationId) : subjects.presence(route.userId);
      connection.publish(subject, toBinary(EventSchema, event), { headers: toNatsHeaders(ephemeralHeaders(route)) });
    },
    onEphemeral(handler) {
      return subscribe(subjects.allEphemeral, (data, headers) => {
        const route = ephemeralRoute(headers);
        if (route) handler(route, fromBinary(EventSchema, data));
      });
    },
    async close() {
      for (const subscription of subscriptions) subscription.unsubscribe();
    },
  };
}
