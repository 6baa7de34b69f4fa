/**
 * Runs tasks one at a time, in call order. The key manager's state (chains, prekey counter,
 * distribution lists) is read-modify-write in the store; two interleaved tasks could hand
 * out one prekey id twice or lose a chain advance.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
