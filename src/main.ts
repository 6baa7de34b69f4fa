/** Entry point: read config → create the app → listen; SIGTERM/SIGINT → graceful stop. */
import { createApp } from "./app.ts";
import { ConfigError, loadConfig } from "./config.ts";

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`parley: configuration error: ${error.message}`);
    process.exit(2);
  }
  throw error;
}

const app = await createApp(config);
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
