/**
 * The embedded mode's bus: one process, so events go straight to the local handlers (on a
 * later tick, as they would over a network, so publishers never run subscriber code).
 */
import type { Event } from "../../gen/parley/v1/event_pb.ts";
import type { EphemeralRoute, EventBus } from "./event-bus.ts";
import type { StoredEvent } from "./event-log.ts";

export function createInProcessBus(): EventBus {
  const eventHandlers = new Set<(event: StoredEvent) => void>();
  const ephemeralHandlers = new Set<(route: EphemeralRoute, event: Event) => void>();
  return {
    async publish(events) {
      const batch = [...events];
      setImmediate(() => {
        for (const event of batch) for (const handler of eventHandlers) handler(event);
      });
    },
    onEvent(handler) {
      eventHandlers.add(handler);
      return () => eventHandlers.delete(handler);
    },
    publishEphemeral(route, event) {
      setImmediate(() => {
        for (const handler of ephemeralHandlers) handler(route, event);
      });
    },
    onEphemeral(handler) {
      ephemeralHandlers.add(handler);
      return () => ephemeralHandlers.delete(handler);
    },
    async close() {
      eventHandlers.clear();
      ephemeralHandlers.clear();
    },
  };
}
