/**
 * The public-key operations the constructions need — Ed25519 detached signatures and the
 * nacl.box shared key (X25519 then HSalsa20) — on the platform's WebCrypto when it has them,
 * on tweetnacl otherwise. tweetnacl's Ed25519 costs milliseconds per operation in JavaScript;
 * a group rotation verifies and seals to hundreds of devices, so the native path is what keeps
 * it interactive. Both paths give the same bytes (Ed25519 is deterministic, X25519 is a
 * function), so devices on either path read each other.
 *
 * Support is decided once, on first use, by a self-test that compares WebCrypto's answers with
 * tweetnacl's: a platform with a missing or wrong implementation falls back as a whole.
 * Imported keys are cached (imports cost as much as the operation), bounded, keyed by a digest
 * of their bytes. Everything symmetric (secretbox, HSalsa20) stays on tweetnacl.
 */
import nacl from "tweetnacl";
import { toHex, utf8 } from "./bytes.ts";

/** Which implementation runs the operations. */
export type PrimitivesBackend = "webcrypto" | "tweetnacl";

const SEED_LENGTH = 32;
const X25519_KEY_LENGTH = 32;
/** Imported keys kept; a 500-member rotation touches about a thousand (signing and prekeys). */
const MAX_CACHED_KEYS = 2048;
/** Digest bytes naming a cached key: 128 bits, collision-free for any cache this size. */
const CACHE_DIGEST_BYTES = 16;

/** PKCS #8 PrivateKeyInfo prefixes for a 32-byte key: Ed25519 (1.3.101.112) and X25519 (1.3.101.110). */
const ED25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);
const X25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);

/** HSalsa20's input and constant in crypto_box_beforenm: 16 zero bytes and "expand 32-byte k". */
const HSALSA20_ZERO_INPUT = new Uint8Array(16);
const HSALSA20_SIGMA = utf8("expand 32-byte k");

/** tweetnacl exports its core functions as `lowlevel` without declaring them. */
const lowlevel = (nacl as unknown as { lowlevel: { crypto_core_hsalsa20(out: Uint8Array, input: Uint8Array, key: Uint8Array, constant: Uint8Array): void } })
  .lowlevel;

/** An imported WebCrypto key, opaque here. */
type WebCryptoKey = object;

/**
 * The part of WebCrypto's SubtleCrypto used here, declared locally: the SDK compiles without
 * DOM types and imports nothing from Node.
 */
interface Subtle {
  importKey(format: "raw" | "pkcs8", keyData: Uint8Array, algorithm: { name: string }, extractable: boolean, keyUsages: string[]): Promise<WebCryptoKey>;
  sign(algorithm: { name: string }, key: WebCryptoKey, data: Uint8Array): Promise<ArrayBuffer>;
  verify(algorithm: { name: string }, key: WebCryptoKey, signature: Uint8Array, data: Uint8Array): Promise<boolean>;
  deriveBits(algorithm: { name: string; public: WebCryptoKey }, baseKey: WebCryptoKey, length: number): Promise<ArrayBuffer>;
}

let forced: PrimitivesBackend | undefined;
let detected: Promise<Subtle | undefined> | undefined;
const importedKeys = new Map<string, Promise<WebCryptoKey>>();

/**
 * Runs everything on tweetnacl ("tweetnacl") or back on the detected backend ("auto"). For
 * tests and benchmarks that compare the two paths in one process; an app has no reason to.
 */
export function setPrimitivesBackend(backend: "auto" | "tweetnacl"): void {
  forced = backend === "tweetnacl" ? "tweetnacl" : undefined;
}

/** The backend operations run on now (detecting WebCrypto support on first call). */
export async function primitivesBackend(): Promise<PrimitivesBackend> {
  return (await subtle()) === undefined ? "tweetnacl" : "webcrypto";
}

/** Ed25519 detached signature of message; signingSecretKey is tweetnacl's 64-byte seed ‖ public key. */
export async function signDetached(message: Uint8Array, signingSecretKey: Uint8Array): Promise<Uint8Array> {
  const webCrypto = await subtle();
  if (webCrypto === undefined || signingSecretKey.length !== nacl.sign.secretKeyLength) return nacl.sign.detached(message, signingSecretKey);
  const key = await importKey(webCrypto, "ed25519-secret", signingSecretKey, (bytes) =>
    webCrypto.importKey("pkcs8", pkcs8(ED25519_PKCS8_PREFIX, bytes.subarray(0, SEED_LENGTH)), { name: "Ed25519" }, false, ["sign"]),
  );
  return new Uint8Array(await webCrypto.sign({ name: "Ed25519" }, key, message));
}

/** True when signature is signingPublicKey's Ed25519 signature of message; false for any malformed input. */
export async function verifyDetached(message: Uint8Array, signature: Uint8Array, signingPublicKey: Uint8Array): Promise<boolean> {
  if (signature.length !== nacl.sign.signatureLength || signingPublicKey.length !== nacl.sign.publicKeyLength) return false;
  const webCrypto = await subtle();
  if (webCrypto === undefined) return nacl.sign.detached.verify(message, signature, signingPublicKey);
  try {
    const key = await importKey(webCrypto, "ed25519-public", signingPublicKey, (bytes) => webCrypto.importKey("raw", bytes, { name: "Ed25519" }, false, ["verify"]));
    return await webCrypto.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    // A public key that is not a curve point: no signature can be valid for it.
    return false;
  }
}

/**
 * nacl.box.before: the 32-byte key a box between the two key pairs is sealed under, for
 * nacl.box.after / nacl.box.open.after. X25519(mySecretKey, theirPublicKey), then HSalsa20
 * as tweetnacl's crypto_box_beforenm does.
 */
export async function boxSharedKey(theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Promise<Uint8Array> {
  if (theirPublicKey.length !== X25519_KEY_LENGTH || mySecretKey.length !== X25519_KEY_LENGTH) throw new Error("bad box key size");
  const webCrypto = await subtle();
  const shared = webCrypto === undefined ? undefined : await webCryptoX25519(webCrypto, theirPublicKey, mySecretKey);
  if (shared === undefined) return nacl.box.before(theirPublicKey, mySecretKey);
  const key = new Uint8Array(32);
  lowlevel.crypto_core_hsalsa20(key, HSALSA20_ZERO_INPUT, shared, HSALSA20_SIGMA);
  return key;
}

/** nacl.box with the shared key computed by boxSharedKey. */
export async function boxSeal(message: Uint8Array, nonce: Uint8Array, theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Promise<Uint8Array> {
  return nacl.box.after(message, nonce, await boxSharedKey(theirPublicKey, mySecretKey));
}

/** nacl.box.open with the shared key computed by boxSharedKey; null when it does not open. */
export async function boxOpen(box: Uint8Array, nonce: Uint8Array, theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Promise<Uint8Array | null> {
  return nacl.box.open.after(box, nonce, await boxSharedKey(theirPublicKey, mySecretKey));
}

/**
 * X25519 on WebCrypto, or undefined when WebCrypto refuses the inputs: it rejects a
 * low-order public key (an all-zero result) that tweetnacl computes with, and falling back
 * for that one call keeps both paths giving the same box for the same keys.
 */
async function webCryptoX25519(webCrypto: Subtle, theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Promise<Uint8Array | undefined> {
  try {
    const [publicKey, privateKey] = await Promise.all([
      importKey(webCrypto, "x25519-public", theirPublicKey, (bytes) => webCrypto.importKey("raw", bytes, { name: "X25519" }, false, [])),
      importKey(webCrypto, "x25519-secret", mySecretKey, (bytes) => webCrypto.importKey("pkcs8", pkcs8(X25519_PKCS8_PREFIX, bytes), { name: "X25519" }, false, ["deriveBits"])),
    ]);
    return new Uint8Array(await webCrypto.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256));
  } catch {
    return undefined;
  }
}

/**
 * Drops a secret key's WebCrypto import from the cache (a used prekey's, once its secret is
 * deleted), so the key does not outlive its deletion in memory.
 */
export function forgetSecretKey(secretKey: Uint8Array): void {
  const digest = toHex(nacl.hash(secretKey).subarray(0, CACHE_DIGEST_BYTES));
  for (const kind of ["x25519-secret", "ed25519-secret"]) importedKeys.delete(`${kind}:${digest}`);
}

/**
 * The imported key for these bytes, from the cache or imported (once, even when asked
 * concurrently). The cache is keyed by a digest of the bytes, so no secret key sits in it as a
 * string (strings cannot be wiped and linger in heap snapshots).
 */
function importKey(webCrypto: Subtle, kind: string, bytes: Uint8Array, importer: (bytes: Uint8Array) => Promise<WebCryptoKey>): Promise<WebCryptoKey> {
  const cacheKey = `${kind}:${toHex(nacl.hash(bytes).subarray(0, CACHE_DIGEST_BYTES))}`;
  const cached = importedKeys.get(cacheKey);
  if (cached !== undefined) {
    importedKeys.delete(cacheKey);
    importedKeys.set(cacheKey, cached);
    return cached;
  }
  const imported = importer(bytes.slice());
  importedKeys.set(cacheKey, imported);
  imported.catch(() => importedKeys.delete(cacheKey));
  for (const oldest of importedKeys.keys()) {
    if (importedKeys.size <= MAX_CACHED_KEYS) break;
    importedKeys.delete(oldest);
  }
  return imported;
}

function pkcs8(prefix: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(prefix.length + key.length);
  out.set(prefix);
  out.set(key, prefix.length);
  return out;
}

/** WebCrypto when it is usable, decided once; undefined while the tweetnacl path is forced. */
function subtle(): Promise<Subtle | undefined> {
  if (forced === "tweetnacl") return Promise.resolve(undefined);
  detected ??= detect();
  return detected;
}

async function detect(): Promise<Subtle | undefined> {
  const candidate = (globalThis as { crypto?: { subtle?: unknown } }).crypto?.subtle as Subtle | undefined;
  if (candidate === undefined) return undefined;
  try {
    return (await selfTest(candidate)) ? candidate : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One signature, one verification each way, and one X25519 on fixed keys, compared with
 * tweetnacl; a platform that lacks Ed25519 or X25519 throws here, one that gets them wrong
 * fails the comparison. Either way the SDK stays on tweetnacl.
 */
async function selfTest(webCrypto: Subtle): Promise<boolean> {
  const signing = nacl.sign.keyPair.fromSeed(new Uint8Array(SEED_LENGTH).fill(7));
  const message = utf8("parley webcrypto self-test");
  const expected = nacl.sign.detached(message, signing.secretKey);
  const privateKey = await webCrypto.importKey("pkcs8", pkcs8(ED25519_PKCS8_PREFIX, signing.secretKey.subarray(0, SEED_LENGTH)), { name: "Ed25519" }, false, ["sign"]);
  const publicKey = await webCrypto.importKey("raw", signing.publicKey, { name: "Ed25519" }, false, ["verify"]);
  const signature = new Uint8Array(await webCrypto.sign({ name: "Ed25519" }, privateKey, message));
  if (!nacl.verify(signature, expected)) return false;
  if (!(await webCrypto.verify({ name: "Ed25519" }, publicKey, expected, message))) return false;
  const forged = expected.slice();
  forged[0] = (forged[0] ?? 0) ^ 1;
  if (await webCrypto.verify({ name: "Ed25519" }, publicKey, forged, message)) return false;

  const mine = nacl.box.keyPair.fromSecretKey(new Uint8Array(X25519_KEY_LENGTH).fill(9));
  const theirs = nacl.box.keyPair.fromSecretKey(new Uint8Array(X25519_KEY_LENGTH).fill(11));
  const boxPrivate = await webCrypto.importKey("pkcs8", pkcs8(X25519_PKCS8_PREFIX, mine.secretKey), { name: "X25519" }, false, ["deriveBits"]);
  const boxPublic = await webCrypto.importKey("raw", theirs.publicKey, { name: "X25519" }, false, []);
  const shared = new Uint8Array(await webCrypto.deriveBits({ name: "X25519", public: boxPublic }, boxPrivate, 256));
  return nacl.verify(shared, nacl.scalarMult(mine.secretKey, theirs.publicKey));
}
