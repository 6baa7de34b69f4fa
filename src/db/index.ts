export { openDatabase, type DatabaseHandle, type DatabaseOptions } from "./database.ts";
export { migrate, MIGRATIONS_DIR } from "./migrate.ts";
export type { Database } from "./schema.ts";
