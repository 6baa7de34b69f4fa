/**
 * A client for ClamAV's clamd, speaking the INSTREAM command (clamd(8)): `zINSTREAM\0`, then the
 * bytes as chunks each prefixed by its length (4 bytes, big-endian), then a zero-length chunk;
 * clamd answers one NUL-terminated line. One connection per scan: on loopback or a unix socket a
 * connect costs far less than the scan, and no connection state can leak between uploads.
 *
 * The upload is already in memory (a unary RPC), so the chunks are views of it, never copies;
 * each write waits for the socket to drain, so a slow clamd never makes us queue the whole file
 * a second time in socket buffers.
 */
import net from "node:net";

/** Where clamd listens: `tcp://host:port` (port 3310 when left out) or `unix:///path/to/socket`. */
export type ClamdAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** What clamd said about a stream it scanned. */
export type ScanVerdict = { clean: true } | { clean: false; signature: string };

/** Why a scan has no verdict. */
export type ClamdFailure =
  | "unreachable" // the connection was refused, reset or timed out before it opened
  | "timeout" // connected, but no answer within the scan timeout
  | "size_limit" // the stream was larger than clamd's StreamMaxLength
  | "error"; // clamd answered with an error, or something we do not understand

/** A scan that produced no verdict. Its message is for logs (it names the clamd address). */
export class ClamdError extends Error {
  readonly failure: ClamdFailure;
  constructor(failure: ClamdFailure, message: string) {
    super(message);
    this.failure = failure;
  }
}

export interface ClamdClientOptions {
  address: ClamdAddress;
  /** How long opening the connection may take. */
  connectTimeoutMs: number;
  /** How long the scan may take once connected: sending every chunk and getting the answer. */
  scanTimeoutMs: number;
  /** Largest chunk sent at once (clamd reads each into a buffer of this size). */
  chunkBytes?: number;
}

/** The clamd port when a tcp:// URL names none (clamd.conf's conventional TCPSocket). */
export const DEFAULT_CLAMD_PORT = 3310;
/** 64 KiB: on loopback 16 KiB to 4 MiB chunks scanned within the noise of each other (10 MiB uploads). */
const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** An answer longer than this is not one clamd sends; stop reading rather than buffer it. */
const MAX_REPLY_BYTES = 4096;
const INSTREAM = Buffer.from("zINSTREAM\0", "latin1");
const PING = Buffer.from("zPING\0", "latin1");
const END_OF_STREAM = Buffer.alloc(4);

/**
 * Parses CLAMD_URL. Throws with a message fit for a configuration error.
 */
export function parseClamdUrl(raw: string): ClamdAddress {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error("is not a valid URL (tcp://host:port or unix:///path/to/clamd.ctl)");
  }
  if (url.protocol === "tcp:") {
    if (url.hostname === "") throw new Error("needs a host: tcp://host:port");
    if (url.pathname !== "" && url.pathname !== "/") throw new Error("takes no path: tcp://host:port");
    const host = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === "" ? DEFAULT_CLAMD_PORT : Number(url.port);
    if (port < 1) throw new Error("needs a port from 1 to 65535");
    return { kind: "tcp", host, port };
  }
  if (url.protocol === "unix:") {
    if (url.host !== "") throw new Error("must name an absolute socket path: unix:///run/clamav/clamd.ctl");
    const socketPath = decodeURIComponent(url.pathname);
    if (socketPath === "" || socketPath === "/") throw new Error("must name the socket: unix:///run/clamav/clamd.ctl");
    return { kind: "unix", path: socketPath };
  }
  throw new Error("must start with tcp:// or unix://");
}

/** The address as a URL again, for logs. */
export function formatClamdAddress(address: ClamdAddress): string {
  return address.kind === "unix" ? `unix://${address.path}` : `tcp://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
}

/**
 * The verdict in one clamd INSTREAM answer (without its NUL): `stream: OK`, `stream: <name>
 * FOUND`; anything else (`INSTREAM size limit exceeded. ERROR`, `<reason> ERROR`, `UNKNOWN
 * COMMAND`, `COMMAND READ TIMED OUT`) is thrown as a ClamdError.
 */
export function parseInstreamReply(reply: string): ScanVerdict {
  const line = reply.trim();
  if (line === "stream: OK") return { clean: true };
  if (line.startsWith("stream: ") && line.endsWith(" FOUND")) {
    const signature = line.slice("stream: ".length, -" FOUND".length).trim();
    if (signature !== "") return { clean: false, signature };
  }
  if (/size limit exceeded/i.test(line)) throw new ClamdError("size_limit", `clamd refused the stream as too large (raise StreamMaxLength in clamd.conf): "${line}"`);
  if (line === "") throw new ClamdError("error", "clamd closed the connection without an answer");
  throw new ClamdError("error", `clamd answered "${line.slice(0, 200)}"`);
}

/** Scans bytes with clamd. */
export class ClamdClient {
  readonly address: ClamdAddress;
  readonly #options: Required<ClamdClientOptions>;

  constructor(options: ClamdClientOptions) {
    this.address = options.address;
    this.#options = { chunkBytes: DEFAULT_CHUNK_BYTES, ...options };
    if (!Number.isInteger(this.#options.chunkBytes) || this.#options.chunkBytes < 1) throw new Error("chunkBytes must be a positive whole number");
  }

  /** The verdict on the bytes; throws ClamdError when there is none. */
  async scan(data: Uint8Array, signal?: AbortSignal): Promise<ScanVerdict> {
    const reply = await this.#exchange(signal, (socket, done) => sendStream(socket, data, this.#options.chunkBytes, done));
    return parseInstreamReply(reply);
  }

  /** Whether clamd answers PING with PONG; throws ClamdError when it cannot be reached. */
  async ping(signal?: AbortSignal): Promise<boolean> {
    const reply = await this.#exchange(signal, async (socket) => {
      socket.write(PING);
    });
    return reply.trim() === "PONG";
  }

  /**
   * Opens a connection, lets `send` write the request, and resolves with the first NUL-terminated
   * answer. `done()` tells `send` that the answer is in (clamd may answer before it has read
   * everything, e.g. past StreamMaxLength, and then closes: further writes would only fail).
   */
  #exchange(signal: AbortSignal | undefined, send: (socket: net.Socket, done: () => boolean) => Promise<void>): Promise<string> {
    const { address, connectTimeoutMs, scanTimeoutMs } = this.#options;
    const where = formatClamdAddress(address);
    return new Promise<string>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new ClamdError("error", "the scan was cancelled before it started"));
        return;
      }
      const socket = address.kind === "unix" ? net.connect({ path: address.path }) : net.connect({ host: address.host, port: address.port });
      const received: Buffer[] = [];
      let receivedBytes = 0;
      let connected = false;
      let settled = false;
      let timer = setTimeout(() => fail(new ClamdError("unreachable", `clamd at ${where} did not accept a connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);

      const finish = (result: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        socket.destroy();
        result();
      };
      const fail = (error: ClamdError) => finish(() => reject(error));
      const answer = (): string | null => {
        const all = Buffer.concat(received, receivedBytes);
        const end = all.indexOf(0);
        return end < 0 ? null : all.subarray(0, end).toString("utf8");
      };
      const onAbort = () => fail(new ClamdError("error", "the scan was cancelled"));
      signal?.addEventListener("abort", onAbort, { once: true });

      socket.on("connect", () => {
        connected = true;
        clearTimeout(timer);
        timer = setTimeout(() => fail(new ClamdError("timeout", `clamd at ${where} did not answer within ${scanTimeoutMs} ms`)), scanTimeoutMs);
        send(socket, () => settled || answer() !== null).catch((error: unknown) => {
          // A write that fails because clamd already answered and hung up is not a failure:
          // the answer (e.g. "size limit exceeded") arrives or has arrived on the read side.
          if (answer() === null) fail(new ClamdError("error", `sending to clamd at ${where} failed: ${(error as Error).message}`));
        });
      });
      socket.on("data", (chunk: Buffer) => {
        received.push(chunk);
        receivedBytes += chunk.length;
        const reply = answer();
        if (reply !== null) finish(() => resolve(reply));
        else if (receivedBytes > MAX_REPLY_BYTES) fail(new ClamdError("error", `clamd at ${where} sent more than ${MAX_REPLY_BYTES} bytes without ending its answer`));
      });
      socket.on("end", () => {
        // Without the NUL, whatever came is still the answer (or nothing, which parses as an error).
        const all = Buffer.concat(received, receivedBytes).toString("utf8");
        finish(() => resolve(all));
      });
      socket.on("error", (error: NodeJS.ErrnoException) => {
        const reply = answer();
        if (reply !== null) finish(() => resolve(reply));
        else if (!connected) fail(new ClamdError("unreachable", `cannot connect to clamd at ${where}: ${error.code ?? error.message}`));
        else fail(new ClamdError("error", `the connection to clamd at ${where} failed: ${error.code ?? error.message}`));
      });
      socket.on("close", () => {
        if (!settled) fail(new ClamdError("error", `clamd at ${where} closed the connection without an answer`));
      });
    });
  }
}

/** Writes INSTREAM, the chunks (views of data) with their length prefixes, and the end marker. */
async function sendStream(socket: net.Socket, data: Uint8Array, chunkBytes: number, answered: () => boolean): Promise<void> {
  await write(socket, INSTREAM);
  for (let offset = 0; offset < data.length; offset += chunkBytes) {
    if (answered()) return;
    const chunk = data.subarray(offset, Math.min(offset + chunkBytes, data.length));
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(chunk.length, 0);
    socket.cork();
    socket.write(length);
    const flowing = socket.write(chunk);
    socket.uncork();
    if (!flowing) await drained(socket);
  }
  if (!answered()) await write(socket, END_OF_STREAM);
}

async function write(socket: net.Socket, bytes: Uint8Array): Promise<void> {
  if (!socket.write(bytes)) await drained(socket);
}

/** Resolves when the socket can take more, rejects when it closes or fails first. */
function drained(socket: net.Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      socket.off("error", onError);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new Error("the connection closed while sending"));
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    socket.on("drain", onDrain);
    socket.on("close", onClose);
    socket.on("error", onError);
  });
}
