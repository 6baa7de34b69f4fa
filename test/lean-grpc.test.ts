/**
 * Black-box checks that a gRPC call answered by the lean path (src/server/lean-grpc.ts), unary or
 * a Subscribe stream, looks to a client exactly like one answered by connect-node.
 *
 * The same bytes can be put in front of connect-node by adding a query string to the path:
 * connect-node routes on the path alone, while the lean path only takes an exact method path.
 * So most protocol cases send one request both ways and compare what comes back, besides
 * asserting the status a gRPC client must see.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import { setTimeout as delay } from "node:timers/promises";
import { gunzipSync, gzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescMethodUnary, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.ts";
import { UserService } from "../gen/parley/v1/user_service_pb.ts";
import { MessageService } from "../gen/parley/v1/message_service_pb.ts";
import type { Message } from "../gen/parley/v1/message_pb.ts";
import { EndReason, EventService, SubscribeRequestSchema, SubscribeResponseSchema, type SubscribeResponse } from "../gen/parley/v1/event_service_pb.ts";
import { createGroup, sendText } from "./helpers/fixtures.ts";
import { expectCode, expectInvalidArgument } from "./helpers/expect.ts";
import { eventually } from "./helpers/feed.ts";
import { newUsers, startTestServer, uniqueId, withDeadline, type TestServer } from "./helpers/test-server.ts";

/** Appended to a method path, it sends the request to connect-node instead of the lean path. */
const VIA_CONNECT_NODE = "?via=connect-node";
/**
 * Request headers of a client that accepts no compressed replies. Most comparisons use them, so
 * that the one known difference in response compression (its own test below) hides no other.
 */
const PLAIN_HEADERS = { te: "trailers", "user-agent": "raw-http2" };
/** The request headers grpc-js sends on every call. */
const GRPC_JS_HEADERS = { te: "trailers", "grpc-accept-encoding": "identity,deflate,gzip", "user-agent": "grpc-node-js/1.14.7" };
const ANSWER_DEADLINE_MS = 10_000;
/** Media uploads are capped small so that a request over readMaxBytes (cap + 64 KiB) stays cheap to send. */
const MAX_MEDIA_BYTES = 1024;
const READ_MAX_BYTES = MAX_MEDIA_BYTES + 64 * 1024;

/** What a client can see of one HTTP/2 exchange. */
interface RawAnswer {
  headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader;
  body: Buffer;
  /** Null for a trailers-only answer (the status is then in the headers). */
  trailers: http2.IncomingHttpHeaders | null;
}

interface Status {
  code: number;
  message: string;
}

function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** A gRPC length-prefixed message: flags byte, big-endian length, the bytes. */
function envelope(message: Uint8Array, flags = 0, length = message.length): Buffer {
  const framed = Buffer.alloc(5 + message.length);
  framed[0] = flags;
  framed.writeUInt32BE(length, 1);
  framed.set(message, 5);
  return framed;
}

/**
 * POSTs the body on the session and collects the answer. With `body: null` the request stream
 * is left open (a client that stalls); "no answer" then means nothing came back within waitMs.
 */
function exchange(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
  body: Buffer | null,
  waitMs = ANSWER_DEADLINE_MS,
): Promise<RawAnswer | "no answer"> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", ...headers });
    let responseHeaders: RawAnswer["headers"] | undefined;
    let trailers: RawAnswer["trailers"] = null;
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      req.close(http2.constants.NGHTTP2_CANCEL);
      if (body === null) resolve("no answer");
      else reject(new Error(`no answer to ${path} within ${waitMs} ms`));
    }, waitMs);
    req.on("response", (h) => (responseHeaders = h));
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("trailers", (t) => (trailers = t));
    req.on("error", () => undefined); // the outcome is judged on close
    req.on("close", () => {
      clearTimeout(timer);
      if (responseHeaders) resolve({ headers: responseHeaders, body: Buffer.concat(chunks), trailers });
      else reject(new Error(`${path}: the stream closed without a response (RST_STREAM code ${req.rstCode})`));
    });
    if (body === null) req.write(Buffer.alloc(0));
    else req.end(body);
  });
}

async function answered(answer: Promise<RawAnswer | "no answer">): Promise<RawAnswer> {
  const a = await answer;
  assert.notEqual(a, "no answer");
  return a as RawAnswer;
}

/** The gRPC status of an answer, from its trailers or, for a trailers-only answer, its headers. */
function statusOf(answer: RawAnswer | "no answer"): Status {
  assert.ok(answer !== "no answer", "an answer came back");
  const source = answer.trailers ?? answer.headers;
  assert.ok(source["grpc-status"] !== undefined, `no grpc-status in ${JSON.stringify(answer.headers)} / ${JSON.stringify(answer.trailers)}`);
  return { code: Number(source["grpc-status"]), message: decodeURIComponent(String(source["grpc-message"] ?? "")) };
}

/** Everything a client can observe of an answer except the Date header. */
function observable(answer: RawAnswer | "no answer") {
  if (answer === "no answer") return answer;
  const { date: _date, ...headers } = answer.headers;
  return { headers, trailersOnly: answer.trailers === null, trailers: answer.trailers, body: answer.body.toString("hex") };
}

/** The single message of a successful answer's body. */
function decodeReply<O extends DescMessage>(schema: O, answer: RawAnswer): MessageShape<O> {
  assert.ok(answer.body.length >= 5, "the answer has a message");
  assert.equal(answer.body[0], 0, "the message is not compressed");
  const length = answer.body.readUInt32BE(1);
  assert.equal(answer.body.length, 5 + length, "the body is exactly one message");
  return fromBinary(schema, answer.body.subarray(5));
}

/** A unary call through @grpc/grpc-js, with the messages coded by protobuf-es; resolves to what grpc-js reports. */
function grpcJsCall<I extends DescMessage, O extends DescMessage>(
  client: grpc.Client,
  method: DescMethodUnary<I, O>,
  request: MessageInitShape<I>,
  metadata: grpc.Metadata,
): Promise<{ error: grpc.ServiceError | null; response: MessageShape<O> | undefined; headers: grpc.Metadata | undefined }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(
      pathOf(method),
      (message: MessageShape<I>) => Buffer.from(toBinary(method.input, message)),
      (bytes: Buffer) => fromBinary(method.output, bytes),
      create(method.input, request),
      metadata,
      { deadline: Date.now() + ANSWER_DEADLINE_MS },
      (error, response) => resolve({ error, response, headers }),
    );
    call.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
}

function assertGrpcJsCode(result: { error: grpc.ServiceError | null }, code: grpc.status): grpc.ServiceError {
  assert.ok(result.error, `expected ${grpc.status[code]}, but the call succeeded`);
  assert.equal(result.error.code, code, `expected ${grpc.status[code]}, got ${grpc.status[result.error.code]}: ${result.error.details}`);
  return result.error;
}

const SUBSCRIBE = pathOf(EventService.method.subscribe);

/** A Subscribe request body: one envelope holding the cursor (empty: start now). */
function subscribeBody(cursor = ""): Buffer {
  return envelope(toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { cursor })));
}

/** One envelope of a response body as it came over the wire (payload still compressed if flagged). */
interface RawFrame {
  compressed: boolean;
  payload: Buffer;
}

/** The envelopes of a response body, in order; fails on a body that does not split into whole ones. */
function splitEnvelopes(body: Buffer): RawFrame[] {
  const frames: RawFrame[] = [];
  let offset = 0;
  while (body.length - offset >= 5) {
    const end = offset + 5 + body.readUInt32BE(offset + 1);
    if (end > body.length) break;
    frames.push({ compressed: (body[offset]! & 1) === 1, payload: body.subarray(offset + 5, end) });
    offset = end;
  }
  assert.equal(offset, body.length, "the body is whole envelopes");
  return frames;
}

/** A Subscribe frame; a compressed one is gzip (the only encoding these tests accept). */
function decodeFrame(frame: RawFrame): SubscribeResponse {
  return fromBinary(SubscribeResponseSchema, frame.compressed ? gunzipSync(frame.payload) : frame.payload);
}

/**
 * What a client sees of a stream's frames, heartbeats left out (they come on a timer). caught_up
 * is shown by kind only: its cursor is the hub's position when the stream opened, which two
 * streams opened one after the other need not share; every other frame byte for byte.
 */
type ObservableFrame = "caught_up" | { compressed: boolean; hex: string };

function observableFrames(frames: RawFrame[]): ObservableFrame[] {
  return frames.flatMap((frame): ObservableFrame[] => {
    const kind = decodeFrame(frame).frame.case;
    if (kind === "heartbeat") return [];
    if (kind === "caughtUp") return ["caught_up"];
    return [{ compressed: frame.compressed, hex: frame.payload.toString("hex") }];
  });
}

/**
 * A server-streaming call on a bare HTTP/2 stream, read as the bytes arrive, so a test can wait
 * for frames while the call is open and end it from the client side.
 */
class RawStream {
  headers: RawAnswer["headers"] | undefined;
  /** Null until trailers arrive, and for a trailers-only answer. */
  trailers: http2.IncomingHttpHeaders | null = null;
  readonly frames: RawFrame[] = [];
  /** When the stream closed (Date.now()), once it has. */
  closedAt: number | undefined;
  readonly closed: Promise<void>;
  readonly #req: http2.ClientHttp2Stream;
  #pending = Buffer.alloc(0);

  constructor(session: http2.ClientHttp2Session, path: string, headers: Record<string, string>, body: Buffer) {
    this.#req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", ...headers });
    this.#req.on("response", (h) => (this.headers = h));
    this.#req.on("trailers", (t) => (this.trailers = t));
    this.#req.on("data", (chunk: Buffer) => this.#take(chunk));
    this.#req.on("error", () => undefined); // judged by what arrived
    this.closed = new Promise((resolve) =>
      this.#req.on("close", () => {
        this.closedAt = Date.now();
        resolve();
      }),
    );
    this.#req.end(body);
  }

  #take(chunk: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    while (this.#pending.length >= 5) {
      const end = 5 + this.#pending.readUInt32BE(1);
      if (this.#pending.length < end) break;
      this.frames.push({ compressed: (this.#pending[0]! & 1) === 1, payload: this.#pending.subarray(5, end) });
      this.#pending = this.#pending.subarray(end);
    }
  }

  get decoded(): SubscribeResponse["frame"][] {
    return this.frames.map((f) => decodeFrame(f).frame);
  }

  /** Waits until a frame that `match` accepts has arrived; fails if the stream closes first. */
  async until(match: (frame: SubscribeResponse["frame"]) => boolean, what: string): Promise<void> {
    await eventually(async () => {
      assert.equal(this.closedAt, undefined, `${what}: the stream closed early; got ${this.decoded.map((f) => f.case).join(", ")}`);
      return this.decoded.some(match);
    }, what, ANSWER_DEADLINE_MS);
  }

  async caughtUp(what: string): Promise<void> {
    await this.until((f) => f.case === "caughtUp", `${what}: caught_up`);
  }

  /** Ends the call from the client with RST_STREAM(CANCEL), as a gRPC client cancelling does. */
  cancel(): void {
    this.#req.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** Everything a client can observe once the stream is over, except the Date header. */
  observable() {
    const { date: _date, ...headers } = this.headers ?? {};
    return { headers, trailersOnly: this.trailers === null, trailers: this.trailers, frames: observableFrames(this.frames) };
  }
}

describe("the lean gRPC path answers as connect-node does", () => {
  let server: TestServer;
  let session: http2.ClientHttp2Session;
  let grpcJs: grpc.Client;
  let me: string;
  let token: string;
  let conversationId: string;

  before(async () => {
    server = await startTestServer({ MAX_MEDIA_BYTES: String(MAX_MEDIA_BYTES) });
    session = http2.connect(server.baseUrl);
    session.on("error", () => undefined);
    grpcJs = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const [a, b, c] = await newUsers(server, 3, "lean");
    me = a!;
    token = await server.tokenFor(me);
    conversationId = (await createGroup(server.clientsFor(me), [b!, c!], "lean path")).id;
  });
  after(async () => {
    grpcJs?.close();
    session?.close();
    await server?.stop();
  });

  function authorized(extra: Record<string, string> = {}): Record<string, string> {
    return { ...PLAIN_HEADERS, authorization: `Bearer ${token}`, ...extra };
  }

  async function asMe(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${token}`);
    return md;
  }

  /** The same request to the lean path and to connect-node. */
  async function bothWays(path: string, headers: Record<string, string>, body: Buffer | null, waitMs?: number) {
    const lean = await exchange(session, path, headers, body, waitMs);
    const connectNode = await exchange(session, path + VIA_CONNECT_NODE, headers, body, waitMs);
    return { lean, connectNode };
  }

  describe("a successful call", () => {
    const getMe = envelope(toBinary(UserService.method.getMe.input, create(UserService.method.getMe.input)));

    it("has content-type application/grpc+proto, the echoed x-request-id, grpc-status 0 in trailers and the reply", async () => {
      const requestId = `req-${randomUUID()}`;
      const answer = await answered(exchange(session, pathOf(UserService.method.getMe), authorized({ "x-request-id": requestId }), getMe));
      assert.equal(answer.headers[":status"], 200);
      assert.equal(answer.headers["content-type"], "application/grpc+proto");
      assert.equal(answer.headers["x-request-id"], requestId);
      assert.ok(answer.trailers, "the status comes in trailers after the message");
      assert.equal(answer.trailers["grpc-status"], "0");
      assert.equal(decodeReply(UserService.method.getMe.output, answer).user?.id, me);
    });

    it("shows a client that accepts nothing compressed the same headers, body and trailers", async () => {
      const { lean, connectNode } = await bothWays(pathOf(UserService.method.getMe), authorized({ "x-request-id": `req-${randomUUID()}` }), getMe);
      assert.deepEqual(observable(lean), observable(connectNode));
    });

    it("shows a client that sends grpc-js's headers (grpc-accept-encoding: identity,deflate,gzip) the same headers, body and trailers", async () => {
      const headers = { ...GRPC_JS_HEADERS, authorization: `Bearer ${token}`, "x-request-id": `req-${randomUUID()}` };
      const { lean, connectNode } = await bothWays(pathOf(UserService.method.getMe), headers, getMe);
      assert.deepEqual(observable(lean), observable(connectNode));
    });

    it("compresses a large reply for a client that accepts gzip, as connect-node does", async () => {
      const clients = server.clientsFor(me, "grpc");
      for (let i = 0; i < 10; i++) await sendText(clients, conversationId, `a longer message, number ${i}, to make the listing exceed a kilobyte`);
      const list = envelope(toBinary(MessageService.method.listMessages.input, create(MessageService.method.listMessages.input, { conversationId, pageSize: 50 })));
      const { lean, connectNode } = await bothWays(pathOf(MessageService.method.listMessages), { ...GRPC_JS_HEADERS, authorization: `Bearer ${token}` }, list);
      const flags = (a: RawAnswer | "no answer") => (a === "no answer" ? a : { encoding: a.headers["grpc-encoding"], compressedFlag: a.body[0] });
      assert.deepEqual(flags(lean), flags(connectNode));
    });

    it("reaches a generated gRPC client with the x-request-id header, grpc-status 0 and the reply", async () => {
      const requestId = `req-${randomUUID()}`;
      let header: Headers | undefined;
      let trailer: Headers | undefined;
      const res = await server.clientsFor(me, "grpc").users.getMe({}, { headers: { "x-request-id": requestId }, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
      assert.equal(res.user?.id, me);
      assert.equal(header?.get("content-type"), "application/grpc+proto");
      assert.equal(header?.get("x-request-id"), requestId);
      assert.equal(trailer?.get("grpc-status"), "0");
    });

    it("reaches grpc-js with the x-request-id header and the reply", async () => {
      const md = await asMe();
      md.set("x-request-id", "from-grpc-js");
      const result = await grpcJsCall(grpcJs, UserService.method.getMe, {}, md);
      assert.equal(result.error, null);
      assert.equal(result.response?.user?.id, me);
      assert.deepEqual(result.headers?.get("x-request-id"), ["from-grpc-js"]);
    });
  });

  describe("errors", () => {
    it("keeps INVALID_ARGUMENT with google.rpc.BadRequest details for grpc-js", async () => {
      const md = await asMe();
      md.set("x-request-id", "bad-text");
      const result = await grpcJsCall(grpcJs, MessageService.method.sendMessage, { conversationId, clientMessageId: randomUUID(), content: { case: "text", value: "" } }, md);
      const err = assertGrpcJsCode(result, grpc.status.INVALID_ARGUMENT);
      const [details] = err.metadata.get("grpc-status-details-bin");
      assert.ok(Buffer.isBuffer(details), "grpc-status-details-bin is present");
      // grpc-status-details-bin is a google.rpc.Status; connect's reader decodes it as any gRPC client would.
      const status = findTrailerError(new Headers({ "grpc-status-details-bin": details.toString("base64") }));
      assert.equal(status?.code, Code.InvalidArgument);
      // grpc-js leaves some percent-escapes in details (decodeURI, not decodeURIComponent), whichever path answers.
      assert.equal(status.rawMessage, decodeURIComponent(err.details));
      const violations = status.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
      assert.ok(violations.some((field) => /text/.test(field)), `the BadRequest names the text field: ${violations.join(", ")}`);
      assert.deepEqual(err.metadata.get("x-request-id"), ["bad-text"]);
    });

    it("keeps INVALID_ARGUMENT with google.rpc.BadRequest details for connect-node's gRPC client", async () => {
      const err = await expectInvalidArgument(
        server.clientsFor(me, "grpc").messages.sendMessage({ conversationId, clientMessageId: randomUUID(), content: { case: "text", value: "" } }),
        "text",
      );
      assert.ok(err.rawMessage.length > 0);
    });

    it("keeps NOT_FOUND for grpc-js and for connect-node's gRPC client", async () => {
      const [outsider] = await newUsers(server, 1, "leanout");
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${await server.tokenFor(outsider!)}`);
      assertGrpcJsCode(await grpcJsCall(grpcJs, MessageService.method.listMessages, { conversationId }, md), grpc.status.NOT_FOUND);
      await expectCode(server.clientsFor(outsider!, "grpc").messages.listMessages({ conversationId }), Code.NotFound);
    });

    it("answers UNAUTHENTICATED without a token, for grpc-js and connect-node's gRPC client", async () => {
      assertGrpcJsCode(await grpcJsCall(grpcJs, UserService.method.getMe, {}, new grpc.Metadata()), grpc.status.UNAUTHENTICATED);
      await expectCode(server.clientsWithAuthorization(undefined, "grpc").users.getMe({}), Code.Unauthenticated);
    });

    /** Failing calls as a raw client sends them; `caller` is who signs the token (nobody: no token). */
    const failing = () => [
      {
        what: "NOT_FOUND",
        path: pathOf(MessageService.method.listMessages),
        body: toBinary(MessageService.method.listMessages.input, create(MessageService.method.listMessages.input, { conversationId })),
        caller: uniqueId("leanraw"),
      },
      {
        what: "INVALID_ARGUMENT with details",
        path: pathOf(MessageService.method.sendMessage),
        body: toBinary(MessageService.method.sendMessage.input, create(MessageService.method.sendMessage.input, { conversationId, clientMessageId: "raw", content: { case: "text", value: "" } })),
        caller: me,
      },
      { what: "UNAUTHENTICATED", path: pathOf(UserService.method.getMe), body: new Uint8Array(), caller: null },
    ];
    for (const what of ["NOT_FOUND", "INVALID_ARGUMENT with details", "UNAUTHENTICATED"]) {
      it(`shows a raw client the same ${what} answer, header for header and trailer for trailer`, async () => {
        const call = failing().find((c) => c.what === what)!;
        const headers: Record<string, string> = { ...PLAIN_HEADERS, "x-request-id": `req-${randomUUID()}` };
        if (call.caller !== null) headers.authorization = `Bearer ${await server.tokenFor(call.caller)}`;
        const { lean, connectNode } = await bothWays(call.path, headers, envelope(call.body));
        assert.notEqual(statusOf(lean).code, 0);
        assert.deepEqual(observable(lean), observable(connectNode));
      });
    }
  });

  describe("malformed protocol input", () => {
    const listMessages = pathOf(MessageService.method.listMessages);
    const valid = toBinary(MessageService.method.listMessages.input, create(MessageService.method.listMessages.input, { conversationId: "c-1", pageSize: 5 }));
    /** Field 1, length-delimited, promising 16 bytes that never come. */
    const notProtobuf = Buffer.from([0x0a, 0x10, 0x01]);
    const cases: Array<{ what: string; body: Buffer; code: Code; messageStart?: string }> = [
      { what: "a body that is not protobuf", body: envelope(notProtobuf), code: Code.Internal, messageStart: "parse binary" },
      { what: "an envelope with the compressed flag but no grpc-encoding", body: envelope(valid, 1), code: Code.Internal },
      { what: "two messages", body: Buffer.concat([envelope(valid), envelope(valid)]), code: Code.Unimplemented },
      { what: "an empty body", body: Buffer.alloc(0), code: Code.Unimplemented },
      { what: "an envelope header cut short", body: envelope(valid).subarray(0, 3), code: Code.InvalidArgument },
      { what: "an envelope whose message is cut short", body: envelope(valid).subarray(0, 5 + valid.length - 2), code: Code.InvalidArgument },
      { what: "a message followed by a cut-short envelope", body: Buffer.concat([envelope(valid), Buffer.from([0, 0])]), code: Code.InvalidArgument },
      { what: "two messages of which the first is not protobuf", body: Buffer.concat([envelope(notProtobuf), envelope(valid)]), code: Code.Internal, messageStart: "parse binary" },
      { what: "an envelope that promises more than readMaxBytes", body: envelope(valid, 0, READ_MAX_BYTES + 1), code: Code.ResourceExhausted },
      { what: "a message larger than readMaxBytes", body: envelope(Buffer.alloc(READ_MAX_BYTES + 100)), code: Code.ResourceExhausted },
    ];
    for (const c of cases) {
      it(`answers ${c.what} with ${Code[c.code]}`, async () => {
        const status = statusOf(await answered(exchange(session, listMessages, authorized(), c.body)));
        assert.equal(status.code, c.code, `expected ${Code[c.code]}, got ${Code[status.code]}: ${status.message}`);
        if (c.messageStart) assert.ok(status.message.startsWith(c.messageStart), status.message);
      });

      it(`answers ${c.what} exactly as connect-node does`, async () => {
        const { lean, connectNode } = await bothWays(listMessages, authorized(), c.body);
        assert.deepEqual(observable(lean), observable(connectNode));
      });
    }

    it("answers a request sent through grpc-js that is not protobuf with INTERNAL", async () => {
      const result = await new Promise<grpc.ServiceError | null>((resolve) =>
        grpcJs.makeUnaryRequest(listMessages, (b: Buffer) => b, (b: Buffer) => b, notProtobuf, new grpc.Metadata(), (err) => resolve(err)),
      );
      assert.equal(result?.code, grpc.status.INTERNAL, result?.details);
      assert.match(result.details, /^parse binary/);
    });
  });

  describe("compressed calls (served by connect-node)", () => {
    it("work from grpc-js with gzip as the default compression", async () => {
      const gzipClient = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), { "grpc.default_compression_algorithm": 2 });
      try {
        const md = await asMe();
        const sent = await grpcJsCall(gzipClient, MessageService.method.sendMessage, { conversationId, clientMessageId: randomUUID(), content: { case: "text", value: "zipped ".repeat(400) } }, md);
        assert.equal(sent.error, null, sent.error?.details);
        assert.deepEqual(sent.response?.message?.content, { case: "text", value: "zipped ".repeat(400) });
        const listed = await grpcJsCall(gzipClient, MessageService.method.listMessages, { conversationId, pageSize: 1 }, md);
        assert.equal(listed.response?.messages[0]?.id, sent.response?.message?.id);
      } finally {
        gzipClient.close();
      }
    });

    it("work from connect-node's gRPC client with sendCompression gzip", async () => {
      const sessionManager = new Http2SessionManager(server.baseUrl);
      try {
        const transport = createGrpcTransport({ baseUrl: server.baseUrl, sessionManager, sendCompression: compressionGzip, compressMinBytes: 0, defaultTimeoutMs: ANSWER_DEADLINE_MS });
        const users = createClient(UserService, transport);
        const res = await users.getMe({}, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.user?.id, me);
      } finally {
        sessionManager.abort();
      }
    });

    it("work from a raw client that gzips the envelope and says grpc-encoding: gzip", async () => {
      const body = envelope(gzipSync(toBinary(UserService.method.getMe.input, create(UserService.method.getMe.input))), 1);
      const answer = await answered(exchange(session, pathOf(UserService.method.getMe), authorized({ "grpc-encoding": "gzip" }), body));
      assert.equal(statusOf(answer).code, 0);
    });
  });

  describe("grpc-timeout", () => {
    const getMe = envelope(new Uint8Array());
    for (const value of ["abc", "5s", "123456789S", "-1S", "1.5S"]) {
      it(`answers a malformed grpc-timeout "${value}" with INVALID_ARGUMENT, as connect-node does`, async () => {
        const { lean, connectNode } = await bothWays(pathOf(UserService.method.getMe), authorized({ "grpc-timeout": value }), getMe);
        const status = statusOf(lean);
        assert.equal(status.code, Code.InvalidArgument, status.message);
        assert.deepEqual(observable(lean), observable(connectNode));
      });
    }

    it("lets a call with a valid grpc-timeout succeed", async () => {
      for (const value of ["5S", "5000m", "1M", "8H"]) {
        const answer = await answered(exchange(session, pathOf(UserService.method.getMe), authorized({ "grpc-timeout": value }), getMe));
        assert.equal(statusOf(answer).code, 0, `${value}: ${statusOf(answer).message}`);
        assert.equal(decodeReply(UserService.method.getMe.output, answer).user?.id, me);
      }
    });

    it("answers a call whose deadline is already past as connect-node does", async () => {
      const { lean, connectNode } = await bothWays(pathOf(UserService.method.getMe), authorized({ "grpc-timeout": "1n", "x-request-id": "past" }), getMe);
      assert.deepEqual(statusOf(lean).code, statusOf(connectNode).code);
    });

    // connect-node does not answer a stalled body at the deadline either (the client's own deadline ends
    // such a call); what matters is that the lean path neither answers differently nor earlier.
    it("treats a client that stalls its request body past grpc-timeout as connect-node does", async () => {
      const { lean, connectNode } = await bothWays(pathOf(UserService.method.getMe), authorized({ "grpc-timeout": "200m" }), null, 2_000);
      const outcome = (a: RawAnswer | "no answer") => (a === "no answer" ? a : statusOf(a).code);
      assert.deepEqual(outcome(lean), outcome(connectNode));
    });
  });

  describe("cancelled calls", () => {
    it("survives clients that reset unary calls mid-flight and keeps serving", async () => {
      const send = () =>
        envelope(toBinary(MessageService.method.sendMessage.input, create(MessageService.method.sendMessage.input, { conversationId, clientMessageId: randomUUID(), content: { case: "text", value: "cancel me" } })));
      const headers = { ":method": "POST", ":path": pathOf(MessageService.method.sendMessage), "content-type": "application/grpc", ...authorized() };
      const closed: Promise<void>[] = [];
      const track = (req: http2.ClientHttp2Stream) => {
        req.on("error", () => undefined);
        closed.push(new Promise((resolve) => req.on("close", resolve)));
      };
      for (let i = 0; i < 30; i++) {
        const body = send();
        // Half a request, then RST_STREAM: the server is still reading the body.
        const half = session.request(headers);
        track(half);
        half.write(body.subarray(0, 7));
        setTimeout(() => half.close(http2.constants.NGHTTP2_CANCEL), i % 5);
        // A whole request, then RST_STREAM while the service may be running or replying.
        const whole = session.request(headers);
        track(whole);
        whole.end(send());
        setTimeout(() => whole.close(http2.constants.NGHTTP2_CANCEL), i % 10);
      }
      // A connection that goes away with calls in flight.
      const doomed = http2.connect(server.baseUrl);
      doomed.on("error", () => undefined);
      for (let i = 0; i < 10; i++) {
        const req = doomed.request(headers);
        req.on("error", () => undefined);
        req.end(send());
      }
      setTimeout(() => doomed.destroy(), 3);
      // grpc-js cancelling its own calls.
      const cancelled = await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const md = await asMe();
          return new Promise<grpc.ServiceError | null>((resolve) => {
            const call = grpcJs.makeUnaryRequest(pathOf(MessageService.method.sendMessage), (b: Buffer) => b, (b: Buffer) => b, send().subarray(5), md, (err) => resolve(err));
            setTimeout(() => call.cancel(), i % 4);
          });
        }),
      );
      assert.ok(cancelled.every((err) => err === null || err.code === grpc.status.CANCELLED));
      await withDeadline(Promise.all(closed), ANSWER_DEADLINE_MS, "the cancelled streams closing");
      await delay(200);

      const answer = await answered(exchange(session, pathOf(UserService.method.getMe), authorized({ "x-request-id": "after" }), envelope(new Uint8Array())));
      assert.equal(statusOf(answer).code, 0);
      assert.equal(answer.headers["x-request-id"], "after");
      const after = await sendText(server.clientsFor(me, "grpc"), conversationId, "still here");
      assert.deepEqual(after.content, { case: "text", value: "still here" });
      const fresh = await grpcJsCall(grpcJs, UserService.method.getMe, {}, await asMe());
      assert.equal(fresh.response?.user?.id, me);
    });
  });

  describe("Subscribe streams", () => {
    /** Headers for a call as the user, with an x-request-id of their own (else each path makes one up). */
    async function bearerFor(userId: string, extra: Record<string, string> = {}): Promise<Record<string, string>> {
      return { ...PLAIN_HEADERS, authorization: `Bearer ${await server.tokenFor(userId)}`, "x-request-id": `req-${randomUUID()}`, ...extra };
    }

    it("show a client that accepts gzip the same headers and frames: caught_up, then live messages in order, an 8 KiB one gzipped", async () => {
      const [reader, writer, third] = await newUsers(server, 3, "leanfeed");
      const conv = await createGroup(server.clientsFor(writer!, "grpc"), [reader!, third!], "lean feed");
      const headers = await bearerFor(reader!, GRPC_JS_HEADERS);
      const lean = new RawStream(session, SUBSCRIBE, headers, subscribeBody());
      const connectNode = new RawStream(session, SUBSCRIBE + VIA_CONNECT_NODE, headers, subscribeBody());
      try {
        await lean.caughtUp("lean");
        await connectNode.caughtUp("connect-node");
        const big = "eight kibibytes ".repeat(512);
        const sent: Message[] = [];
        for (const text of ["first", big, "last"]) sent.push(await sendText(server.clientsFor(writer!, "grpc"), conv.id, text));
        const isLast = (f: SubscribeResponse["frame"]) => f.case === "event" && f.value.kind.case === "messageCreated" && f.value.kind.value.message?.id === sent[2]!.id;
        await lean.until(isLast, "lean: the last message");
        await connectNode.until(isLast, "connect-node: the last message");

        assert.equal(lean.headers?.["content-type"], "application/grpc+proto");
        assert.equal(lean.headers?.["grpc-encoding"], "gzip");
        const frames = lean.frames.filter((f) => decodeFrame(f).frame.case !== "heartbeat");
        assert.equal(decodeFrame(frames[0]!).frame.case, "caughtUp", "caught_up comes first");
        // With NATS, the group's own events (recorded before the streams opened) may reach the hub
        // after one stream opened and before the other: only the messages are certain to be on both.
        const messagesOf = (stream: RawStream) =>
          stream.frames.filter((f) => {
            const { frame } = decodeFrame(f);
            return frame.case === "event" && frame.value.kind.case === "messageCreated";
          });
        const texts = messagesOf(lean).map((f) => {
          const { frame } = decodeFrame(f);
          const message = frame.case === "event" && frame.value.kind.case === "messageCreated" ? frame.value.kind.value.message : undefined;
          return { seq: message?.seq, text: message?.content.case === "text" ? message.content.value : undefined, compressed: f.compressed };
        });
        assert.deepEqual(texts, [
          { seq: sent[0]!.seq, text: "first", compressed: false },
          { seq: sent[1]!.seq, text: big, compressed: true },
          { seq: sent[2]!.seq, text: "last", compressed: false },
        ]);
        assert.deepEqual(lean.observable().headers, connectNode.observable().headers);
        assert.deepEqual(observableFrames(messagesOf(lean)), observableFrames(messagesOf(connectNode)));
      } finally {
        lean.cancel();
        connectNode.cancel();
      }
    });

    it("free a stream the client resets or whose connection drops: the user goes offline and the server keeps serving, as via connect-node", async () => {
      const users = await newUsers(server, 5, "leanrst");
      const watcher = server.clientsFor(users[4]!, "grpc").events;
      const online = async (userId: string) => (await watcher.getPresence({ userIds: [userId] })).presences[0]?.online === true;
      const dropped = [http2.connect(server.baseUrl), http2.connect(server.baseUrl)];
      for (const s of dropped) s.on("error", () => undefined);
      const calls = [
        { how: "lean, RST_STREAM", session, path: SUBSCRIBE, end: (s: RawStream) => s.cancel() },
        { how: "connect-node, RST_STREAM", session, path: SUBSCRIBE + VIA_CONNECT_NODE, end: (s: RawStream) => s.cancel() },
        { how: "lean, connection dropped", session: dropped[0]!, path: SUBSCRIBE, end: () => dropped[0]!.destroy() },
        { how: "connect-node, connection dropped", session: dropped[1]!, path: SUBSCRIBE + VIA_CONNECT_NODE, end: () => dropped[1]!.destroy() },
      ];
      const streams = await Promise.all(calls.map(async (c, i) => new RawStream(c.session, c.path, await bearerFor(users[i]!), subscribeBody())));
      await Promise.all(streams.map((s, i) => s.caughtUp(calls[i]!.how)));
      await Promise.all(users.slice(0, 4).map((u, i) => eventually(() => online(u), `${calls[i]!.how}: the user online`)));

      calls.forEach((c, i) => c.end(streams[i]!));
      const endedAt = Date.now();
      const offlineAfter = await Promise.all(
        users.slice(0, 4).map(async (u, i) => {
          await eventually(async () => !(await online(u)), `${calls[i]!.how}: the user offline once the stream ended`);
          return Date.now() - endedAt;
        }),
      );
      // Presence TTL is 30 s: offline within a few seconds means the server closed the stream itself.
      for (const [i, ms] of offlineAfter.entries()) assert.ok(ms < 5_000, `${calls[i]!.how}: offline after ${ms} ms`);

      const again = new RawStream(session, SUBSCRIBE, await bearerFor(users[0]!), subscribeBody());
      try {
        await again.caughtUp("a new lean stream on the same connection");
        await eventually(() => online(users[0]!), "the user online again");
      } finally {
        again.cancel();
      }
      const answer = await answered(exchange(session, pathOf(UserService.method.getMe), authorized(), envelope(new Uint8Array())));
      assert.equal(statusOf(answer).code, 0);
    });

    it("answer a call without a token with UNAUTHENTICATED, header for header and trailer for trailer", async () => {
      const { lean, connectNode } = await bothWays(SUBSCRIBE, { ...PLAIN_HEADERS, "x-request-id": `req-${randomUUID()}` }, subscribeBody());
      assert.equal(statusOf(lean).code, Code.Unauthenticated);
      assert.deepEqual(observable(lean), observable(connectNode));
    });

    it("answer a malformed cursor with INVALID_ARGUMENT and the same details", async () => {
      const { lean, connectNode } = await bothWays(SUBSCRIBE, authorized({ "x-request-id": `req-${randomUUID()}` }), subscribeBody("not-a-cursor"));
      const status = statusOf(lean);
      assert.equal(status.code, Code.InvalidArgument, status.message);
      assert.deepEqual(observable(lean), observable(connectNode));
    });

    const valid = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { cursor: "" }));
    const notProtobuf = Buffer.from([0x0a, 0x10, 0x01]);
    const malformed: Array<{ what: string; body: Buffer; code: Code; message?: string }> = [
      { what: "an empty body", body: Buffer.alloc(0), code: Code.Unimplemented, message: "protocol error: missing input message for server-streaming method" },
      { what: "two messages", body: Buffer.concat([envelope(valid), envelope(valid)]), code: Code.Unimplemented, message: "protocol error: received extra input message for server-streaming method" },
      { what: "a body that is not protobuf", body: envelope(notProtobuf), code: Code.Internal },
      { what: "two messages of which the first is not protobuf", body: Buffer.concat([envelope(notProtobuf), envelope(valid)]), code: Code.Internal },
      { what: "a message followed by a cut-short envelope", body: Buffer.concat([envelope(valid), Buffer.from([0, 0])]), code: Code.InvalidArgument },
      { what: "an envelope with the compressed flag but no grpc-encoding", body: envelope(valid, 1), code: Code.Internal },
      { what: "an envelope that promises more than readMaxBytes", body: envelope(valid, 0, READ_MAX_BYTES + 1), code: Code.ResourceExhausted },
    ];
    /** An answer as observable() shows it, but without the x-request-id trailer (compared on its own below). */
    const besidesRequestIdTrailer = (answer: RawAnswer | "no answer") => {
      const seen = observable(answer);
      if (seen === "no answer" || seen.trailers === null) return seen;
      const { "x-request-id": _id, ...trailers } = seen.trailers;
      return { ...seen, trailers };
    };
    for (const c of malformed) {
      it(`answer ${c.what} with ${Code[c.code]} and the same headers, message and trailers as connect-node`, async () => {
        const { lean, connectNode } = await bothWays(SUBSCRIBE, authorized({ "x-request-id": `req-${randomUUID()}` }), c.body);
        const status = statusOf(lean);
        assert.equal(status.code, c.code, `expected ${Code[c.code]}, got ${Code[status.code]}: ${status.message}`);
        if (c.message) assert.equal(status.message, c.message);
        assert.deepEqual(besidesRequestIdTrailer(lean), besidesRequestIdTrailer(connectNode));
      });
    }

    it("echo the client's x-request-id in the trailers of a malformed body's or grpc-timeout's error, as connect-node does", async () => {
      const calls = [...malformed.map((c) => ({ ...c, headers: {} })), { what: "grpc-timeout: abc", headers: { "grpc-timeout": "abc" }, body: subscribeBody() }];
      const echoed: Array<{ what: string; connectNode: boolean; lean: boolean }> = [];
      for (const c of calls) {
        const requestId = `req-${randomUUID()}`;
        const { lean, connectNode } = await bothWays(SUBSCRIBE, authorized({ ...c.headers, "x-request-id": requestId }), c.body);
        const echoes = (a: RawAnswer | "no answer") => a !== "no answer" && (a.trailers ?? a.headers)["x-request-id"] === requestId;
        echoed.push({ what: c.what, connectNode: echoes(connectNode), lean: echoes(lean) });
      }
      assert.ok(echoed.every((e) => e.connectNode), "connect-node echoes it every time");
      assert.deepEqual(echoed.filter((e) => !e.lean).map((e) => e.what), [], "calls whose x-request-id the lean path does not echo");
    });

    // Which check comes first shows when a request is both unauthenticated and malformed.
    const unauthenticatedAndMalformed: Array<{ what: string; headers: Record<string, string>; body: Buffer }> = [
      { what: "an empty body", headers: {}, body: Buffer.alloc(0) },
      { what: "a malformed grpc-timeout", headers: { "grpc-timeout": "abc" }, body: subscribeBody() },
    ];
    for (const c of unauthenticatedAndMalformed) {
      it(`answer a call without a token and with ${c.what} with the same code as connect-node`, async () => {
        const { lean, connectNode } = await bothWays(SUBSCRIBE, { ...PLAIN_HEADERS, "x-request-id": `req-${randomUUID()}`, ...c.headers }, c.body);
        assert.deepEqual(statusOf(lean), statusOf(connectNode));
      });
    }

    it("end a stream at its grpc-timeout (300m) as connect-node does", async () => {
      const [reader] = await newUsers(server, 1, "leantimeout");
      const headers = await bearerFor(reader!, { "grpc-timeout": "300m" });
      const started = Date.now();
      const lean = await answered(exchange(session, SUBSCRIBE, headers, subscribeBody()));
      const leanMs = Date.now() - started;
      const viaStart = Date.now();
      const connectNode = await answered(exchange(session, SUBSCRIBE + VIA_CONNECT_NODE, headers, subscribeBody()));
      const connectNodeMs = Date.now() - viaStart;
      const outcome = (a: RawAnswer) => {
        const { headers: h, trailersOnly, trailers } = observable(a) as Exclude<ReturnType<typeof observable>, "no answer">;
        return { headers: h, trailersOnly, trailers, frames: observableFrames(splitEnvelopes(a.body)) };
      };
      assert.deepEqual(outcome(lean), outcome(connectNode));
      assert.ok(leanMs >= 250 && leanMs < 3_000, `the lean stream ended ${leanMs} ms after it started (connect-node: ${connectNodeMs} ms)`);
    });

    it("answer a stream whose deadline is already past (1n) as connect-node does", async () => {
      const { lean, connectNode } = await bothWays(SUBSCRIBE, authorized({ "grpc-timeout": "1n" }), subscribeBody());
      assert.deepEqual(statusOf(lean), statusOf(connectNode));
    });
  });

  describe("Subscribe streams when the server stops", () => {
    let stopping: TestServer;
    let own: http2.ClientHttp2Session;
    before(async () => {
      stopping = await startTestServer();
      own = http2.connect(stopping.baseUrl);
      own.on("error", () => undefined);
    });
    after(async () => {
      own?.destroy();
      await stopping?.stop();
    });

    it("end with the resumable ending frame (SERVER_DRAINING, a cursor) and grpc-status 0, as via connect-node", async () => {
      const [reader] = await newUsers(stopping, 1, "leandrain");
      const headers = { ...GRPC_JS_HEADERS, authorization: `Bearer ${await stopping.tokenFor(reader!)}`, "x-request-id": `req-${randomUUID()}` };
      const lean = new RawStream(own, SUBSCRIBE, headers, subscribeBody());
      const connectNode = new RawStream(own, SUBSCRIBE + VIA_CONNECT_NODE, headers, subscribeBody());
      await lean.caughtUp("lean");
      await connectNode.caughtUp("connect-node");
      const stopped = stopping.stop();
      await withDeadline(Promise.all([lean.closed, connectNode.closed]), ANSWER_DEADLINE_MS, "both streams ending as the server stops");
      own.close();
      await stopped;

      const last = lean.decoded.at(-1);
      assert.ok(last?.case === "ending", `the last frame is ending; got ${lean.decoded.map((f) => f.case).join(", ")}`);
      assert.equal(last.value.reason, EndReason.SERVER_DRAINING);
      assert.ok(last.value.cursor, "the ending frame carries a cursor");
      assert.equal(lean.trailers?.["grpc-status"], "0");
      assert.deepEqual(lean.observable(), connectNode.observable());
    });
  });

  describe("unknown methods", () => {
    for (const path of ["/parley.v1.UserService/NoSuchMethod", "/parley.v1.NoSuchService/GetMe"]) {
      it(`answers ${path} over application/grpc so that grpc-js reports UNIMPLEMENTED`, async () => {
        const err = await new Promise<grpc.ServiceError | null>((resolve) =>
          grpcJs.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), (e) => resolve(e)),
        );
        assert.equal(err?.code, grpc.status.UNIMPLEMENTED, err?.details);
        const answer = await answered(exchange(session, path, authorized(), envelope(new Uint8Array())));
        const grpcStatus = answer.trailers?.["grpc-status"] ?? answer.headers["grpc-status"];
        assert.ok(answer.headers[":status"] === 404 || grpcStatus === String(Code.Unimplemented), JSON.stringify(answer.headers));
      });
    }
  });
});
