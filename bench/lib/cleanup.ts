/**
 * Whatever happens (error, Ctrl-C, SIGTERM, a watchdog firing), the bench undoes what it set
 * up: stops its server processes, drops its database, deletes its NATS streams. Steps run
 * last-registered first, each at most once, and a failing step does not stop the others.
 */
type Step = { what: string; run: () => unknown; first: boolean };

const steps: Step[] = [];
let running: Promise<void> | null = null;

/**
 * Registers an undo step; returns a function that runs it now (and only once). Steps marked
 * `first` (closing client connections) run before all others.
 */
export function onCleanup(what: string, run: () => unknown, options: { first?: boolean } = {}): () => Promise<void> {
  let done: Promise<void> | null = null;
  const step: Step = {
    what,
    first: options.first ?? false,
    run: () => (done ??= Promise.resolve().then(run).then(() => {}, (error: unknown) => console.error(`bench: cleanup "${what}" failed: ${(error as Error).message ?? error}`))),
  };
  steps.push(step);
  return async () => {
    const i = steps.indexOf(step);
    if (i >= 0) steps.splice(i, 1);
    await step.run();
  };
}

/** Runs every registered step, newest first. */
export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    for (const step of steps.filter((s) => s.first)) await step.run();
    while (steps.length > 0) await steps.pop()!.run();
  })();
  return running;
}

/** Cleans up and exits on SIGINT/SIGTERM, and after `watchdogMs` whatever is going on. */
export function guardProcess(watchdogMs: number): { disarm(): void } {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      console.error(`bench: ${signal}, cleaning up`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    console.error(`bench: gave up after ${Math.round(watchdogMs / 1000)} s`);
    void cleanupAll().finally(() => process.exit(1));
  }, watchdogMs);
  watchdog.unref();
  return { disarm: () => clearTimeout(watchdog) };
}

/**
 * Runs a benchmark's main under guardProcess, cleans up whatever happens, and exits: 0 when
 * main returned true or nothing, 1 when it returned false or threw.
 */
export async function runBench(main: () => Promise<boolean | void>, watchdogMs: number): Promise<never> {
  const guard = guardProcess(watchdogMs);
  let exitCode = 1;
  try {
    exitCode = (await main()) === false ? 1 : 0;
  } catch (error) {
    console.error(`bench: ${(error as Error).stack ?? error}`);
  } finally {
    guard.disarm();
    await cleanupAll();
  }
  process.exit(exitCode);
}
