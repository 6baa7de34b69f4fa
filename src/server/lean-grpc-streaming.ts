/**
 * Serves one server-streaming RPC over gRPC (HTTP/2, binary, uncompressed request) without
 * connect's streaming pipeline, for streams that spend their life waiting (the feed).
 *
 * WHY: connect's ES2017 build turns each of its async generators into a hand-written state
 * machine of closures, contexts, queues and promises, and a server stream passes through about
 * a dozen of them (request pipe, invoke, interceptors, serialize, compress, join, catch, the
 * node writer). While a stream waits for its next message every stage stays suspended: a heap
 * snapshot of 2,000 idle Subscribe streams showed ~100 closures, ~95 contexts and ~23 promises
 * per stream, most of the ~36 KiB of heap each one kept. This path keeps one async loop per
 * stream instead.
 *
 * What stays the same as connect: the interceptors (the same instances, applied in the same
 * order), the handler context (deadline, shutdown and the client leaving abort ctx.signal, as
 * there), and the status trailers (connect's setTrailerStatus, error details included). What a client could notice: responses are never compressed, and
 * grpc-accept-encoding is not advertised. Anything else (the Connect and gRPC-Web protocols,
 * HTTP/1.1, JSON, a compressed request) is left to connect.
 */
import http2 from "node:http2";
import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescMethodServerStreaming, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextValues,
  type HandlerContext,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { contentTypeProto, grpcStatusOk, parseContentType, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";

type AnyFn = Parameters<Interceptor>[0];

export interface LeanServerStreamingOptions<I extends DescMessage, O extends DescMessage> {
  method: DescMethodServerStreaming<I, O>;
  impl: (request: MessageShape<I>, context: HandlerContext) => AsyncIterable<MessageShape<O>>;
  /** The interceptors the connect adapter runs, first = outermost, as connect applies them. */
  interceptors: Interceptor[];
  /** Aborts every stream's context, as the connect adapter's shutdownSignal does. */
  shutdownSignal: AbortSignal;
  /** Largest request body accepted. */
  readMaxBytes: number;
}

/** Returns a request handler that serves the method and answers true, or answers false for connect to serve it. */
export function createLeanServerStreaming<I extends DescMessage, O extends DescMessage>(
  options: LeanServerStreamingOptions<I, O>,
): (req: unknown, res: unknown) => boolean {
  const path = `/${options.method.parent.typeName}/${options.method.name}`;
  return (req, res) => {
    if (!(req instanceof http2.Http2ServerRequest) || !(res instanceof http2.Http2ServerResponse)) return false;
    if (req.method !== "POST" || req.url !== path || !parseContentType(req.headers["content-type"] ?? null)?.binary) return false;
    const encoding = req.headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    void serve(options, req, res);
    return true;
  };
}

async function serve<I extends DescMessage, O extends DescMessage>(
  { method, impl, interceptors, shutdownSignal, readMaxBytes }: LeanServerStreamingOptions<I, O>,
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
): Promise<void> {
  const timeout = parseTimeout(firstValue(req.headers["grpc-timeout"]) ?? null, Number.MAX_SAFE_INTEGER);
  const { context, abort, dispose } = createStreamContext(method, req, shutdownSignal, timeout.timeoutMs);
  const invoke: AnyFn = async (request) => {
    const input = await single(request.message as AsyncIterable<MessageShape<I>>);
    const unchanged = request.service === context.service && request.header === context.requestHeader && request.signal === context.signal && request.contextValues === context.values;
    const message = impl(input, unchanged ? context : { ...context, service: request.service, requestHeader: request.header, signal: request.signal, values: request.contextValues });
    const response: StreamResponse<I, O> = { stream: true, service: method.parent, method, header: context.responseHeader, trailer: context.responseTrailer, message };
    return response as StreamResponse;
  };
  const call = interceptors.reduceRight<AnyFn>((next, interceptor) => interceptor(next), invoke);

  const gone = () => res.stream.destroyed || res.stream.closed;
  let header = context.responseHeader;
  let trailer = context.responseTrailer;
  let output: AsyncIterator<MessageShape<O>> | undefined;
  try {
    if (timeout.error) throw timeout.error;
    const request: StreamRequest<I, O> = {
      stream: true,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: context.url,
      signal: context.signal,
      header: context.requestHeader,
      contextValues: context.values,
      message: once(await readRequest(req, method.input, readMaxBytes)),
    };
    const response = await call(request as StreamRequest);
    if (!response.stream) throw new ConnectError("an interceptor answered a stream with a unary response", Code.Internal);
    header = response.header;
    trailer = response.trailer;
    output = (response.message as AsyncIterable<MessageShape<O>>)[Symbol.asyncIterator]();
    for (let next = await output.next(); next.done !== true && !gone(); next = await output.next()) {
      if (!res.headersSent) res.writeHead(200, toNodeHeaders(header));
      if (!res.write(encodeEnvelope(0, toBinary(method.output, next.value)))) await drained(res);
    }
  } catch (error) {
    abort(error);
    setTrailerStatus(trailer, error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error));
  } finally {
    // Runs the implementation's finally blocks when the client left mid-stream.
    await output?.return?.().catch(() => {});
    dispose();
  }
  if (gone()) return;
  if (!res.headersSent) res.writeHead(200, toNodeHeaders(header));
  res.addTrailers(toNodeHeaders(trailer));
  res.end();
}

/**
 * The handler context of one stream, with one AbortController that the client leaving, the
 * deadline and server shutdown abort directly. (connect's createHandlerContext links three
 * more controllers with a listener on each, which an idle stream would keep for its life.)
 */
function createStreamContext(method: DescMethod, req: http2.Http2ServerRequest, shutdownSignal: AbortSignal, timeoutMs: number | undefined) {
  const controller = new AbortController();
  const abort = (reason?: unknown) => {
    if (!controller.signal.aborted) controller.abort(reason);
  };
  const onShutdown = () => abort(shutdownSignal.reason);
  if (shutdownSignal.aborted) onShutdown();
  else shutdownSignal.addEventListener("abort", onShutdown, { once: true });
  req.once("close", () => abort(new ConnectError("the client went away", Code.Canceled)));
  const deadlineAt = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  const deadline = timeoutMs === undefined ? undefined : setTimeout(() => abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
  const context: HandlerContext = {
    method,
    service: method.parent,
    signal: controller.signal,
    timeoutMs: () => (deadlineAt === undefined ? undefined : deadlineAt - Date.now()),
    requestMethod: "POST",
    requestHeader: toWebHeaders(req.headers),
    responseHeader: new Headers({ "content-type": contentTypeProto }),
    responseTrailer: new Headers({ "grpc-status": grpcStatusOk }),
    protocolName: "grpc",
    values: createContextValues(),
    url: `http://${req.authority}${req.url}`,
  };
  const dispose = () => {
    clearTimeout(deadline);
    shutdownSignal.removeEventListener("abort", onShutdown);
    abort();
  };
  return { context, abort, dispose };
}

/** Reads the body and parses its one message (a function of its own, so no stream keeps the bytes). */
async function readRequest<I extends DescMessage>(req: http2.Http2ServerRequest, schema: I, maxBytes: number): Promise<MessageShape<I>> {
  return parseSingleEnvelope(schema, await readBody(req, maxBytes));
}

/** The request message from the single gRPC envelope in body, the way connect checks it. */
function parseSingleEnvelope<I extends DescMessage>(schema: I, body: Buffer): MessageShape<I> {
  if (body.length < 5) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const flags = body[0]!;
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length) throw new ConnectError("protocol error: premature end of stream", Code.InvalidArgument);
  if (body.length > 5 + length) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  if (flags !== 0) throw new ConnectError("protocol error: received compressed or unknown envelope without grpc-encoding", Code.Internal);
  try {
    return fromBinary(schema, body.subarray(5));
  } catch (error) {
    throw new ConnectError(`parse binary: ${(error as Error).message}`, Code.Internal);
  }
}

async function readBody(req: http2.Http2ServerRequest, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new ConnectError(`message size is larger than configured readMaxBytes ${maxBytes}`, Code.ResourceExhausted);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The first message of an iterable that must hold exactly one (an interceptor may have replaced it). */
async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  if ((await it.next()).done !== true) throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  return first.value;
}

async function* once<T>(value: T): AsyncGenerator<T> {
  yield value;
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

function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function toWebHeaders(headers: http2.IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.append(key, v);
  }
  return out;
}

function toNodeHeaders(headers: Headers): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  headers.forEach((value, key) => (out[key] = value));
  return out;
}
