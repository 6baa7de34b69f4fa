/**
 * A lean path for the two calls that dominate a messaging server: unary gRPC calls (every
 * send, reaction and read marker) and server-streaming gRPC calls (the feed), over HTTP/2
 * with a binary, uncompressed request.
 *
 * Why: connect-node runs each call through a chain of async iterables (its ES2017 build turns
 * each async generator into a state machine of closures, queues and promises), header
 * conversions and four linked abort controllers. For a unary call that cost more CPU than the
 * call's own work (a send storm spent about a quarter of a node's time there); for a feed
 * stream, which spends its life waiting, about a dozen suspended stages held most of the
 * ~40 KiB of heap each stream kept. See the README's bench:send and bench:feed sections.
 *
 * What stays the same, so a client cannot tell the paths apart: the same interceptors (the
 * same instances, in the same order) and the same service implementations; connect's own
 * unary invoker, timeout parser, compression negotiation and status trailers (error details
 * included); envelopes checked in connect's order, with its codes and messages. Replies are
 * compressed when the client accepts it, as connect-node does (with the same compressions, see
 * reply-compression.ts). Everything else goes to
 * connect-node untouched: the Connect and gRPC-Web protocols, HTTP/1.1, JSON codecs,
 * compressed requests, client and bidi streaming, and paths it does not know
 * (test/lean-grpc.test.ts compares both paths byte for byte).
 */
import http2 from "node:http2";
import { fromBinary, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  createServiceImplSpec,
  type ConnectRouter,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import { compressionNegotiate, invokeUnaryImplementation, type Compression } from "@connectrpc/connect/protocol";
import { contentTypeProto, grpcStatusOk, parseContentType, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { REPLY_COMPRESSIONS } from "./reply-compression.ts";

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;
type StreamingSpec = Extract<MethodImplSpec, { kind: "server_streaming" }>;
type AnyFn = Parameters<Interceptor>[0];

/** Takes the request and returns true, or leaves it to connect-node and returns false. */
export type LeanGrpcHandler = (req: unknown, res: unknown) => boolean;

export interface LeanGrpcOptions {
  /** The same route registrations connect-node serves. */
  routes: (router: ConnectRouter) => void;
  /** The interceptors connect-node runs, first = outermost. */
  interceptors: Interceptor[];
  /** Largest request message accepted, as connect-node's readMaxBytes. */
  readMaxBytes: number;
  /** Aborts every open stream's context, as connect-node's shutdownSignal does. */
  shutdownSignal: AbortSignal;
  /** Each call's initial context values from its request, as connect-node's contextValues option. */
  contextValues?: (req: http2.Http2ServerRequest) => ContextValues;
}

const ENVELOPE_HEADER_BYTES = 5;
const COMPRESSED_FLAG = 0b1;
/** Smaller messages are sent uncompressed (connect-node's compressMinBytes default). */
const COMPRESS_MIN_BYTES = 1024;
/** Encodings of streamed messages, by message object (see encodeShared). */
const sharedEncodings = new WeakMap<object, Uint8Array>();

export function createLeanGrpcHandler(options: LeanGrpcOptions): LeanGrpcHandler {
  const specs = methodsByPath(options.routes);
  return (req, res) => {
    if (!(req instanceof http2.Http2ServerRequest) || !(res instanceof http2.Http2ServerResponse)) return false;
    if (req.method !== "POST") return false;
    const spec = specs.get(req.url);
    if (!spec || !parseContentType(req.headers["content-type"] ?? null)?.binary) return false;
    const encoding = req.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    if (spec.kind === "unary") void serveUnary(spec, req, res, options);
    else void serveStream(spec, req, res, options);
    return true;
  };
}

/** The unary and server-streaming methods of every registered service, by path (`/package.Service/Method`). */
function methodsByPath(routes: (router: ConnectRouter) => void): Map<string, UnarySpec | StreamingSpec> {
  const specs = new Map<string, UnarySpec | StreamingSpec>();
  const add = (spec: MethodImplSpec) => {
    if (spec.kind === "unary" || spec.kind === "server_streaming") specs.set(`/${spec.method.parent.typeName}/${spec.method.name}`, spec);
  };
  const recorder: ConnectRouter = {
    handlers: [],
    service(service, implementation) {
      Object.values(createServiceImplSpec(service, implementation).methods).forEach(add);
      return recorder;
    },
    rpc(method, impl) {
      add({ kind: method.methodKind, method, impl } as MethodImplSpec);
      return recorder;
    },
  };
  routes(recorder);
  return specs;
}

async function serveUnary(spec: UnarySpec, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, options: LeanGrpcOptions): Promise<void> {
  // A unary call is short: shutdown lets it finish within the grace period instead of aborting it.
  const call = createCall(spec.method, req, null, options.contextValues);
  let reply: Uint8Array | null = null;
  try {
    const input = await readInput(spec.method, req, options.readMaxBytes, "unary", call.timeoutError);
    const output = await invokeUnaryImplementation(spec, call.context, input, options.interceptors);
    reply = await frame(toBinary(spec.method.output, output), call.compression);
  } catch (error) {
    setTrailerStatus(call.context.responseTrailer, asConnectError(error));
  } finally {
    call.finish();
  }
  if (res.closed || res.destroyed) return;
  res.writeHead(200, toRecord(call.context.responseHeader));
  res.addTrailers(toRecord(call.context.responseTrailer));
  if (reply) res.end(reply);
  else res.end();
}

async function serveStream(spec: StreamingSpec, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, options: LeanGrpcOptions): Promise<void> {
  const { method } = spec;
  const call = createCall(method, req, options.shutdownSignal, options.contextValues);
  const { context } = call;
  const invoke: AnyFn = async (request) => {
    const input = await single(request.message as AsyncIterable<unknown>);
    // An interceptor may have replaced parts of the request; the implementation sees them (as connect's mergeRequest does).
    const unchanged = request.service === context.service && request.header === context.requestHeader && request.signal === context.signal && request.contextValues === context.values;
    const ctx = unchanged ? context : { ...context, service: request.service, requestHeader: request.header, signal: request.signal, values: request.contextValues };
    const message = spec.impl(input as never, ctx) as AsyncIterable<never>;
    const response: StreamResponse = { stream: true, service: method.parent, method, header: context.responseHeader, trailer: context.responseTrailer, message };
    return response;
  };
  const intercepted = options.interceptors.reduceRight<AnyFn>((next, interceptor) => interceptor(next), invoke);

  const gone = () => res.stream.destroyed || res.stream.closed;
  let header = context.responseHeader;
  let trailer = context.responseTrailer;
  let output: AsyncIterator<unknown> | undefined;
  try {
    const request: StreamRequest = {
      stream: true,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: context.url,
      signal: context.signal,
      header: context.requestHeader,
      contextValues: context.values,
      // Read inside the interceptors, as connect-node does, so a malformed request is still
      // authenticated, logged and answered with its request id.
      message: readLazily(() => readInput(method, req, options.readMaxBytes, "server-streaming", call.timeoutError)),
    };
    const response = await intercepted(request);
    if (!response.stream) throw new ConnectError("an interceptor answered a stream with a unary response", Code.Internal);
    header = response.header;
    trailer = response.trailer;
    output = (response.message as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    for (let next = await output.next(); next.done !== true && !gone(); next = await output.next()) {
      if (!res.headersSent) res.writeHead(200, toRecord(header));
      // Waiting for the drain is the backpressure the feed's bounded buffers rely on.
      if (!res.write(await frame(encodeShared(method.output, next.value as object), call.compression))) await drained(res);
    }
  } catch (error) {
    call.abort(error);
    setTrailerStatus(trailer, asConnectError(error));
  } finally {
    // Runs the implementation's finally blocks when the client left mid-stream.
    await output?.return?.().catch(() => {});
    call.finish();
  }
  if (gone()) return;
  if (!res.headersSent) res.writeHead(200, toRecord(header));
  res.addTrailers(toRecord(trailer));
  res.end();
}

interface Call {
  context: HandlerContext;
  /** The reply compression the client accepts, if any. */
  compression: Compression | null;
  /** A malformed grpc-timeout, answered as connect-node answers it. */
  timeoutError: ConnectError | undefined;
  abort(reason: unknown): void;
  /** Releases the deadline timer and the shutdown listener; the client leaving no longer aborts the call. */
  finish(): void;
}

/**
 * The handler context of one call, with one AbortController that the client leaving, the
 * deadline and (for streams) server shutdown abort directly. connect's createHandlerContext
 * links three more controllers with a listener on each, which an idle stream keeps for life.
 */
function createCall(
  method: DescMethod,
  req: http2.Http2ServerRequest,
  shutdownSignal: AbortSignal | null,
  contextValues: ((req: http2.Http2ServerRequest) => ContextValues) | undefined,
): Call {
  const controller = new AbortController();
  let finished = false;
  const abort = (reason: unknown) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onShutdown = () => abort(shutdownSignal?.reason);
  if (shutdownSignal?.aborted) onShutdown();
  else shutdownSignal?.addEventListener("abort", onShutdown, { once: true });
  req.once("close", () => {
    if (!finished) abort(new ConnectError("the client went away", Code.Canceled));
  });
  const timeout = parseTimeout(header(req, "grpc-timeout"), Number.MAX_SAFE_INTEGER);
  const timeoutMs = timeout.timeoutMs;
  const deadlineAt = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const deadline = timeoutMs === undefined ? undefined : setTimeout(() => abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
  const compression = compressionNegotiate(REPLY_COMPRESSIONS, null, header(req, "grpc-accept-encoding"), "Grpc-Accept-Encoding").response;
  const responseHeader = new Headers({ "content-type": contentTypeProto });
  if (compression) responseHeader.set("grpc-encoding", compression.name);
  const context: HandlerContext = {
    method,
    service: method.parent,
    signal: controller.signal,
    timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
    requestMethod: "POST",
    requestHeader: toWebHeaders(req.headers),
    responseHeader,
    responseTrailer: new Headers({ "grpc-status": grpcStatusOk }),
    protocolName: "grpc",
    values: contextValues ? contextValues(req) : createContextValues(),
    url: `http://${req.authority}${req.url}`,
  };
  return {
    context,
    compression,
    timeoutError: timeout.error,
    abort,
    finish() {
      finished = true;
      clearTimeout(deadline);
      shutdownSignal?.removeEventListener("abort", onShutdown);
    },
  };
}

/**
 * Reads the body and parses its one message (in a function of its own, so a long-lived stream
 * keeps neither the bytes nor the buffers they were read into).
 */
async function readInput(method: DescMethod, req: http2.Http2ServerRequest, readMaxBytes: number, kind: string, timeoutError: ConnectError | undefined) {
  if (timeoutError) throw timeoutError;
  return onlyMessage(method.input, await readBody(req, readMaxBytes + ENVELOPE_HEADER_BYTES), readMaxBytes, kind);
}

/**
 * The request body, or as much of it as fits in maxBytes (the rest is read and dropped; the
 * envelope's declared length then tells the client what was too large).
 */
function readBody(req: http2.Http2ServerRequest, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      if (size >= maxBytes) return;
      chunks.push(chunk);
      size += chunk.length;
    });
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once("error", reject);
  });
}

/**
 * The one message of a request body: envelopes (a flags byte, a big-endian length, the
 * message) are read in order and checked the way connect-node checks them, so a malformed
 * body gets the same code and message on either path.
 */
function onlyMessage(schema: DescMessage, body: Buffer, readMaxBytes: number, kind: string) {
  const first = nextEnvelope(body, 0, readMaxBytes);
  if (!first) throw missingInput(kind);
  const message = decode(schema, first.message);
  const second = nextEnvelope(body, first.end, readMaxBytes);
  if (second) {
    decode(schema, second.message);
    throw extraInput(kind);
  }
  return message;
}

/** The envelope starting at offset: null at the end of the body; an error for a broken one. */
function nextEnvelope(body: Buffer, offset: number, readMaxBytes: number): { message: Uint8Array; end: number } | null {
  if (offset === body.length) return null;
  if (body.length - offset < ENVELOPE_HEADER_BYTES) throw incompleteEnvelope();
  const length = body.readUInt32BE(offset + 1);
  if (length > readMaxBytes) throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
  const end = offset + ENVELOPE_HEADER_BYTES + length;
  if (body.length < end) throw incompleteEnvelope();
  if (body[offset]! & COMPRESSED_FLAG) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  return { message: body.subarray(offset + ENVELOPE_HEADER_BYTES, end), end };
}

function missingInput(kind: string): ConnectError {
  return new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
}

function extraInput(kind: string): ConnectError {
  return new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.Unimplemented);
}

function incompleteEnvelope(): ConnectError {
  return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
}

/** A request message; bytes that are not one are INTERNAL, as connect-node answers them. */
function decode(schema: DescMessage, bytes: Uint8Array) {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
  }
}

/** A message in its envelope, compressed when the client accepts it and it is worth it. */
async function frame(message: Uint8Array, compression: Compression | null): Promise<Buffer> {
  const compressed = compression !== null && message.length >= COMPRESS_MIN_BYTES;
  const payload = compressed ? await compression.compress(message) : message;
  const framed = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + payload.length);
  framed[0] = compressed ? COMPRESSED_FLAG : 0;
  framed.writeUInt32BE(payload.length, 1);
  framed.set(payload, ENVELOPE_HEADER_BYTES);
  return framed;
}

/**
 * A streamed message's encoding, made once per message object: an implementation that hands
 * the same (never again mutated) object to many streams, as the feed does with an event's
 * frame, pays for one encoding.
 */
function encodeShared(schema: DescMessage, message: object): Uint8Array {
  let bytes = sharedEncodings.get(message);
  if (!bytes) {
    bytes = toBinary(schema, message as never);
    sharedEncodings.set(message, bytes);
  }
  return bytes;
}

function asConnectError(error: unknown): ConnectError {
  return error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error);
}

/** The first message of an iterable that must hold exactly one (an interceptor may have replaced it). */
async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw missingInput("server-streaming");
  if ((await it.next()).done !== true) throw extraInput("server-streaming");
  return first.value;
}

async function* readLazily<T>(read: () => Promise<T>): AsyncGenerator<T> {
  yield await read();
}

/** Resolves when the stream can take more, or is closed (the caller then stops writing). */
function drained(res: http2.Http2ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.stream.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.stream.once("close", done);
  });
}

function header(req: http2.Http2ServerRequest, name: string): string | null {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : (value ?? null);
}

function toWebHeaders(headers: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.append(name, v);
  }
  return out;
}

function toRecord(headers: Headers): Record<string, string> {
  const record: Record<string, string> = {};
  headers.forEach((value, name) => (record[name] = value));
  return record;
}
