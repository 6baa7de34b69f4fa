/** Entry point: read config → create the app → listen; SIGTERM/SIGINT → graceful stop. */
import { createApp } from "./app.ts";
import { ConfigError, loadConfig } from "./config.ts";

/** A configuration error ends the process with its message alone (no stack: nothing crashed). */
async function orExitOnConfigError<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`parley: configuration error: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
}

const config = await orExitOnConfigError(loadConfig);
// The database can disagree with the configuration too (EVENT_PARTITIONS).
const app = await orExitOnConfigError(() => createApp(config));
await app.start();

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, "stopping");
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error({ err: error }, "unclean stop");
        process.exit(1);
      },
    );
  });
}
