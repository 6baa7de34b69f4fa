/**
 * The SDK must load in browsers: bundling it for the browser platform fails on any Node-only
 * import (esbuild cannot resolve node: modules there), and the bundle then runs a crypto round
 * trip in a context with only what browsers have (no require, no process, no Buffer).
 */
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { build } from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function bundle(entry: string, format: "esm" | "iife" = "esm", globalName?: string): Promise<string> {
  const result = await build({
    entryPoints: [path.join(ROOT, entry)],
    bundle: true,
    platform: "browser",
    format,
    globalName,
    write: false,
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

describe("the client SDK in a browser bundle", () => {
  it("bundles the session layer and the key manager for browsers, with no Node module in them", async () => {
    for (const entry of ["src/client/index.ts", "src/client/e2e/index.ts"]) {
      const code = await bundle(entry);
      assert.ok(code.length > 10_000, `${entry} bundled`);
      assert.doesNotMatch(code, /\bfrom\s+["']node:|require\(["']node:/, `${entry} imports no node: module`);
    }
  });

  it("seals, opens and derives keys with the bundled crypto where only browser globals exist", async () => {
    const code = await bundle("src/client/crypto/index.ts", "iife", "ParleyCrypto");
    const sandbox: Record<string, unknown> = { crypto: globalThis.crypto, TextEncoder, TextDecoder, console };
    sandbox.self = sandbox; // a browser's global object, where tweetnacl finds crypto.getRandomValues
    vm.createContext(sandbox);
    vm.runInContext(
      `${code}
      const bytes = (text) => Uint8Array.from(new TextEncoder().encode(text)); // this realm's Uint8Array
      const key = ParleyCrypto.createSenderKey();
      const search = crypto.getRandomValues(new Uint8Array(32));
      const tokens = ParleyCrypto.blindTokens(search, "Hello browser hello");
      const sealed = ParleyCrypto.encryptMedia(bytes("a file for the browser"), { contentType: "text/plain" });
      const opened = new TextDecoder().decode(ParleyCrypto.decryptMedia(sealed.ciphertext, sealed.mediaKey));
      globalThis.result = { opened, tokens: tokens.length, keyId: key.id, safety: ParleyCrypto.safetyNumber(
        { userId: "a", signingPublicKey: bytes("a".repeat(32)) }, { userId: "b", signingPublicKey: bytes("b".repeat(32)) }) };`,
      sandbox,
    );
    const result = sandbox.result as { opened: string; tokens: number; keyId: string; safety: string };
    assert.equal(result.opened, "a file for the browser", "secretbox round trip");
    assert.equal(result.tokens, 2, "one token per distinct word");
    assert.ok(result.keyId.length > 0, "a sender key was made");
    assert.match(result.safety, /^(\d{5} ){11}\d{5}$/, "a 60-digit safety number");
  });
});
