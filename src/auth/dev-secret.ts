/**
 * With no JWT_SECRET and no JWKS URL, a random development secret is created once under the
 * data dir (mode 0600) so that `npm start` and `npm run token` agree without any setup.
 * It never leaves the machine and is never committed (data/ is git-ignored).
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

export function devSecretPath(dataDir: string): string {
  return path.join(dataDir, "dev-jwt-secret");
}

/** Reads the development secret, creating it on first use. */
export async function loadOrCreateDevSecret(dataDir: string): Promise<string> {
  const file = devSecretPath(dataDir);
  try {
    return (await readFile(file, "utf8")).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(dataDir, { recursive: true });
  const secret = randomBytes(32).toString("base64url");
  try {
    await writeFile(file, secret + "\n", { mode: 0o600, flag: "wx" });
    return secret;
  } catch (error) {
    // Another process created it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return (await readFile(file, "utf8")).trim();
    throw error;
  }
}
