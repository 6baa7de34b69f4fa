/**
 * A lean path for the commonest request: a unary gRPC call over HTTP/2 with an uncompressed
 * protobuf body (every mobile send, reaction, read marker). connect-node runs each call
 * through a chain of async iterables, header conversions and abort signals that cost more
 * CPU than the call's own work (about a quarter of a node's time under a send storm, see
 * the README's bench:feed profile). This path reads the body, decodes it, runs the same
 * interceptors and the same service implementation through connect's own unary invoker,
 * and writes the reply and the gRPC status trailers with connect's own encoder, so a client
 * cannot tell the two apart.
 *
 * Everything else goes to connect-node untouched: streaming calls, Connect and gRPC-Web,
 * compressed requests, JSON codecs and methods it does not know.
 */
import type http2 from "node:http2";
import { fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createServiceImplSpec, type ConnectRouter, type HandlerContext, type Interceptor, type MethodImplSpec } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { compressionNegotiate, invokeUnaryImplementation, type Compression } from "@connectrpc/connect/protocol";
import { grpcStatusOk, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

/** A handler that takes the request and returns true, or leaves it alone and returns false. */
export type GrpcUnaryHandler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => boolean;

export interface GrpcUnaryOptions {
  /** The same route registrations connect-node serves. */
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  /** Largest request message accepted, as connect-node's readMaxBytes. */
  readMaxBytes: number;
}

/** What the content-type of a binary gRPC request is; JSON-coded gRPC goes to connect-node. */
const BINARY_GRPC = /^application\/grpc(\+proto)?$/i;
const ENVELOPE_HEADER_BYTES = 5;
const COMPRESSED_FLAG = 0b1;
/** What connect-node offers, in its order of preference. */
const RESPONSE_COMPRESSIONS: Compression[] = [compressionGzip, compressionBrotli];
/** Smaller replies are sent uncompressed (connect-node's compressMinBytes default). */
const COMPRESS_MIN_BYTES = 1024;
/** Aborts the signal of a call whose client went away before the reply was written. */
const CLIENT_GONE = new ConnectError("the client went away", Code.Canceled);
const DEADLINE_PASSED = new ConnectError("the deadline passed", Code.DeadlineExceeded);

export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  const specs = unaryMethodsByPath(options.routes);
  return (req, res) => {
    if (req.method !== "POST" || req.httpVersionMajor !== 2) return false;
    const spec = specs.get(req.url);
    if (!spec) return false;
    if (!BINARY_GRPC.test(req.headers["content-type"] ?? "")) return false;
    const encoding = req.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    void serve(spec, req, res, options);
    return true;
  };
}

/** The unary methods of every registered service, by request path (`/package.Service/Method`). */
function unaryMethodsByPath(routes: (router: ConnectRouter) => void): Map<string, UnarySpec> {
  const specs = new Map<string, UnarySpec>();
  const add = (spec: MethodImplSpec) => {
    if (spec.kind === "unary") specs.set(`/${spec.method.parent.typeName}/${spec.method.name}`, spec);
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

async function serve(spec: UnarySpec, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse, options: GrpcUnaryOptions): Promise<void> {
  const aborter = new AbortController();
  let replied = false;
  res.once("close", () => {
    if (!replied) aborter.abort(CLIENT_GONE);
  });
  const timeout = parseTimeout(header(req, "grpc-timeout"), Number.MAX_SAFE_INTEGER);
  const deadline = timeout.timeoutMs === undefined ? null : setTimeout(() => aborter.abort(DEADLINE_PASSED), timeout.timeoutMs);
  const context = handlerContext(spec.method, req, aborter.signal, timeout.timeoutMs);
  const compression = compressionNegotiate(RESPONSE_COMPRESSIONS, null, header(req, "grpc-accept-encoding"), "Grpc-Accept-Encoding").response;
  if (compression) context.responseHeader.set("grpc-encoding", compression.name);
  let reply: Uint8Array | null = null;
  try {
    if (timeout.error) throw timeout.error;
    const input = onlyMessage(spec.method, await readBody(req, options.readMaxBytes + ENVELOPE_HEADER_BYTES), options.readMaxBytes);
    const output = await invokeUnaryImplementation(spec, context, input, options.interceptors);
    reply = await envelope(toBinary(spec.method.output, output), compression);
  } catch (error) {
    setTrailerStatus(context.responseTrailer, error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error));
  } finally {
    if (deadline) clearTimeout(deadline);
  }
  replied = true;
  if (res.closed || res.destroyed) return;
  res.writeHead(200, toRecord(context.responseHeader));
  res.addTrailers(toRecord(context.responseTrailer));
  if (reply) res.end(reply);
  else res.end();
}

function header(req: http2.Http2ServerRequest, name: string): string | null {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : (value ?? null);
}

function toRecord(headers: Headers): Record<string, string> {
  const record: Record<string, string> = {};
  headers.forEach((value, name) => (record[name] = value));
  return record;
}

function handlerContext(method: DescMethod, req: http2.Http2ServerRequest, signal: AbortSignal, timeoutMs: number | undefined): HandlerContext {
  const deadlineAt = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const requestHeader = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) value.forEach((v) => requestHeader.append(name, v));
    else requestHeader.set(name, value);
  }
  return {
    method,
    service: method.parent as DescService,
    signal,
    timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
    requestMethod: "POST",
    requestHeader,
    responseHeader: new Headers({ "content-type": "application/grpc+proto" }),
    responseTrailer: new Headers({ "grpc-status": grpcStatusOk }),
    protocolName: "grpc",
    values: createContextValues(),
    url: `http://${req.headers[":authority"] ?? "localhost"}${req.url}`,
  };
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
 * The one message of a unary request body: envelopes (a flags byte, a big-endian length, the
 * message) are read in order and checked the way connect-node checks them, so a malformed
 * body gets the same code and message on either path.
 */
function onlyMessage(method: DescMethod, body: Buffer, readMaxBytes: number) {
  const first = nextEnvelope(body, 0, readMaxBytes);
  if (!first) throw new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
  const message = decode(method, first.message);
  if (nextEnvelope(body, first.end, readMaxBytes)) throw new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
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

function incompleteEnvelope(): ConnectError {
  return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
}

/** A request message; bytes that are not one are INTERNAL, as connect-node answers them. */
function decode(method: DescMethod, bytes: Uint8Array) {
  try {
    return fromBinary(method.input, bytes);
  } catch (error) {
    throw new ConnectError(`parse binary: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
  }
}

/** The reply in its envelope, compressed when the client accepts it and it is worth it. */
async function envelope(message: Uint8Array, compression: Compression | null): Promise<Buffer> {
  const compressed = compression !== null && message.length >= COMPRESS_MIN_BYTES;
  const payload = compressed ? await compression.compress(message) : message;
  const framed = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + payload.length);
  framed[0] = compressed ? COMPRESSED_FLAG : 0;
  framed.writeUInt32BE(payload.length, 1);
  framed.set(payload, ENVELOPE_HEADER_BYTES);
  return framed;
}
