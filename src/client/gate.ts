/**
 * Two tiny coordination primitives for the background loops, written without timers or node:
 * modules so they work the same in a browser.
 */

/** Open or closed; waiters pass once it is open. The outbox waits on it until the session is live. */
export class Gate {
  #open: boolean;
  #waiters: Array<() => void> = [];

  constructor(open = false) {
    this.#open = open;
  }

  get isOpen(): boolean {
    return this.#open;
  }

  open(): void {
    this.#open = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  close(): void {
    this.#open = false;
  }

  /** Resolves when the gate is open, or when the signal aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    if (this.#open || signal?.aborted) return Promise.resolve();
    return waitIn(this.#waiters, signal);
  }
}

/** "Something changed": wakes whoever waits, so an idle loop needs no polling. */
export class Wakeup {
  #waiters: Array<() => void> = [];
  #pending = false;

  notify(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    if (waiters.length === 0) this.#pending = true;
    for (const w of waiters) w();
  }

  /** Resolves on the next notify (or at once if one came since the last wait), or on abort. */
  wait(signal?: AbortSignal): Promise<void> {
    if (this.#pending || signal?.aborted) {
      this.#pending = false;
      return Promise.resolve();
    }
    return waitIn(this.#waiters, signal);
  }
}

/** Waits until one of `waiters` is called (by whoever owns the list) or the signal aborts. */
function waitIn(waiters: Array<() => void>, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      signal?.removeEventListener("abort", done);
      resolve();
    };
    waiters.push(done);
    signal?.addEventListener("abort", done, { once: true });
  });
}
