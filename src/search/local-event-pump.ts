/**
 * TEMPORARY until the shared consumer runtime (src/workers) lands: feeds this node's committed
 * events to the indexer in batches, retrying failed ones after their delay.
 */
import type { EventBus, StoredEvent } from "../events/index.ts";
import type { IndexerDelivery, IndexerOutcome } from "./search-indexer.ts";

export function pumpLocalEvents(bus: EventBus, handle: (batch: readonly IndexerDelivery[]) => Promise<IndexerOutcome[]>): () => void {
  let pending: IndexerDelivery[] = [];
  let running = false;
  const timers = new Set<NodeJS.Timeout>();
  async function drain() {
    if (running) return;
    running = true;
    while (pending.length > 0) {
      const batch = pending.splice(0, 256);
      const outcomes = await handle(batch).catch(() => batch.map(() => ({ retryAfterMs: 1000 })));
      outcomes.forEach((outcome, i) => {
        if (typeof outcome === "object" && "retryAfterMs" in outcome) {
          const timer = setTimeout(() => {
            timers.delete(timer);
            pending.push({ value: batch[i]!.value, deliveryCount: batch[i]!.deliveryCount + 1 });
            void drain();
          }, outcome.retryAfterMs);
          timers.add(timer);
        }
      });
    }
    running = false;
  }
  const off = bus.onEvent((event: StoredEvent) => {
    pending.push({ value: event, deliveryCount: 1 });
    void drain();
  });
  return () => {
    off();
    for (const timer of timers) clearTimeout(timer);
    pending = [];
  };
}
