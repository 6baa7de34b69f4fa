/**
 * Which requests the lean gRPC path takes and which it leaves to connect-node. The black-box
 * comparisons in lean-grpc.test.ts rely on this split (the exact method path goes to the lean
 * path, the same path with a query string to connect-node); were the lean path to take
 * nothing, they would compare connect-node with itself and pass. This checks the split on a
 * bare HTTP/2 server with a stub service.
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { GetMeResponseSchema, UserService } from "../gen/parley/v1/user_service_pb.ts";
import { createLeanGrpcHandler } from "../src/server/lean-grpc.ts";

const GET_ME = "/parley.v1.UserService/GetMe";

describe("the lean gRPC path's share of requests", () => {
  let server: http2.Http2Server;
  let session: http2.ClientHttp2Session;
  let calls = 0;
  const taken: boolean[] = [];

  before(async () => {
    const routes = (router: ConnectRouter) => {
      router.service(UserService, {
        getMe: () => {
          calls++;
          return create(GetMeResponseSchema, { user: { id: "stub-user", displayName: "Stub" } });
        },
      });
    };
    const lean = createLeanGrpcHandler({ routes, interceptors: [], readMaxBytes: 1024, shutdownSignal: new AbortController().signal });
    server = http2.createServer((req, res) => {
      const took = lean(req, res);
      taken.push(took);
      if (!took) res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });

  after(async () => {
    session.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Sends an empty GetMeRequest; resolves with whether the lean path took it, the :status and the trailers. */
  function call(path: string, headers: http2.OutgoingHttpHeaders, method = "POST") {
    const seen = taken.length;
    const stream = session.request({ ":method": method, ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
    // One uncompressed envelope holding an empty message.
    if (method === "POST") stream.end(Buffer.alloc(5));
    else stream.end();
    return new Promise<{ taken: boolean; status: number; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      let status = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("trailers", (t) => (trailers = t));
      stream.on("close", () => resolve({ taken: taken[seen]!, status, trailers }));
      stream.on("error", reject);
      stream.resume();
    });
  }

  it("serves a unary call to the exact method path with a binary, uncompressed body, through the service", async () => {
    const before = calls;
    const answer = await call(GET_ME, {});
    assert.equal(answer.taken, true);
    assert.equal(answer.status, 200);
    assert.equal(answer.trailers["grpc-status"], "0");
    assert.equal(calls, before + 1, "the registered implementation answered");
  });

  it("takes application/grpc+proto too", async () => {
    assert.equal((await call(GET_ME, { "content-type": "application/grpc+proto" })).taken, true);
  });

  for (const [what, path, headers] of [
    ["the same path with a query string", `${GET_ME}?via=connect-node`, {}],
    ["a JSON-coded call", GET_ME, { "content-type": "application/grpc+json" }],
    ["a Connect call", GET_ME, { "content-type": "application/proto" }],
    ["a gRPC-Web call", GET_ME, { "content-type": "application/grpc-web+proto" }],
    ["a gzip-compressed request", GET_ME, { "grpc-encoding": "gzip" }],
    ["an unknown method", "/parley.v1.UserService/NoSuchMethod", {}],
  ] as const) {
    it(`leaves ${what} to connect-node`, async () => {
      const answer = await call(path, headers);
      assert.equal(answer.taken, false);
      assert.equal(answer.status, 404, "the stub server's connect-node stand-in answered");
    });
  }

  it("leaves a GET to connect-node", async () => {
    assert.equal((await call(GET_ME, {}, "GET")).taken, false);
  });

  it("encodes the reply as the gRPC envelope of the response message", async () => {
    const stream = session.request({ ":method": "POST", ":path": GET_ME, "content-type": "application/grpc", te: "trailers" });
    stream.end(Buffer.alloc(5));
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    await new Promise((resolve) => stream.on("end", resolve));
    const body = Buffer.concat(chunks);
    assert.equal(body[0], 0, "not compressed");
    assert.equal(body.readUInt32BE(1), body.length - 5, "one envelope holding the whole reply");
    const reply = fromBinary(GetMeResponseSchema, body.subarray(5));
    assert.equal(reply.user?.id, "stub-user");
  });
});
