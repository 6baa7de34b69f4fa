/**
 * A gRPC Subscribe call on a bare node:http2 connection, read strictly on demand.
 *
 * The connect-node client reads a response stream into memory as fast as the server sends it,
 * whether or not the caller pulls from the async iterable, so it cannot play a phone that stops
 * reading. This reader only takes bytes off the HTTP/2 stream when the caller asks for the next
 * frame: stop pulling and HTTP/2 flow control holds the server's writes after about 64 KiB.
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  SubscribeRequestSchema,
  SubscribeResponseSchema,
  type SubscribeResponse,
} from "../../gen/parley/v1/event_service_pb.ts";
import type { FeedSource } from "./feed.ts";

/** A FeedSource that subscribes over its own HTTP/2 connection with this bearer token. */
export function rawGrpcSource(baseUrl: string, token: () => Promise<string>): FeedSource {
  return (cursor, signal) => subscribe(baseUrl, token, cursor, signal);
}

async function* subscribe(
  baseUrl: string,
  token: () => Promise<string>,
  cursor: string,
  signal: AbortSignal,
): AsyncGenerator<SubscribeResponse> {
  const session = http2.connect(baseUrl);
  session.on("error", () => undefined);
  const onAbort = () => session.destroy();
  signal.addEventListener("abort", onAbort);
  try {
    const req = session.request({
      ":method": "POST",
      ":path": "/parley.v1.EventService/Subscribe",
      "content-type": "application/grpc+proto",
      te: "trailers",
      authorization: `Bearer ${await token()}`,
    });
    let status: { code: number; message: string } | undefined;
    const takeStatus = (headers: http2.IncomingHttpHeaders) => {
      const code = headers["grpc-status"];
      if (code !== undefined) {
        status = { code: Number(code), message: decodeURIComponent(String(headers["grpc-message"] ?? "")) };
      }
    };
    req.on("response", takeStatus); // trailers-only responses carry the status in the headers
    req.on("trailers", takeStatus);
    const body = toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { cursor }));
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    req.end(frame);

    let pending: Buffer = Buffer.alloc(0);
    for await (const chunk of req as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        yield fromBinary(SubscribeResponseSchema, pending.subarray(5, 5 + length));
        pending = pending.subarray(5 + length);
      }
    }
    if (signal.aborted) return;
    if (!status) throw new ConnectError("stream ended without a grpc-status", Code.Internal);
    if (status.code !== 0) throw new ConnectError(status.message, status.code as Code);
  } finally {
    signal.removeEventListener("abort", onAbort);
    session.close();
  }
}
