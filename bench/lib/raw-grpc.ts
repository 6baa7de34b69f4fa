/**
 * A lean gRPC client for unary calls over one HTTP/2 connection, straight on node:http2:
 * length-prefixed protobuf in, grpc-status from trailers out. It speaks the same wire
 * protocol as any gRPC client (a phone's, grpc-js, connect-node) but costs the load
 * generator a fraction of the CPU of connect-node's client, so on a 2-core machine more of
 * the CPU goes to the server being measured. Errors are ConnectErrors with the gRPC code.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { onCleanup } from "./cleanup.ts";

/** What a unary method descriptor (e.g. MessageService.method.sendMessage) provides. */
export interface UnaryMethod<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly input: I;
  readonly output: O;
  readonly parent: { readonly typeName: string };
}

const open = new Set<RawGrpcConnection>();
onCleanup("close raw HTTP/2 connections", () => open.forEach((c) => c.close()), { first: true });

export class RawGrpcConnection {
  readonly #baseUrl: string;
  #session: http2.ClientHttp2Session | null = null;

  constructor(baseUrl: string) {
    this.#baseUrl = baseUrl;
    open.add(this);
  }

  #connect(): http2.ClientHttp2Session {
    if (this.#session && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = http2.connect(this.#baseUrl);
    session.on("error", () => {}); // surfaced per call
    session.once("close", () => {
      if (this.#session === session) this.#session = null;
    });
    this.#session = session;
    return session;
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: UnaryMethod<I, O>,
    input: MessageInitShape<I>,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<MessageShape<O>> {
    const body = toBinary(method.input, create(method.input, input));
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    return new Promise<MessageShape<O>>((resolve, reject) => {
      let req: http2.ClientHttp2Stream;
      try {
        req = this.#connect().request({
          ":method": "POST",
          ":path": `/${method.parent.typeName}/${method.name}`,
          "content-type": "application/grpc+proto",
          te: "trailers",
          "grpc-timeout": `${timeoutMs}m`,
          ...headers,
        });
      } catch (error) {
        reject(new ConnectError((error as Error).message, Code.Unavailable));
        return;
      }
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message: string | undefined;
      let settled = false;
      const finish = (error: ConnectError | null, value?: MessageShape<O>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(value!);
      };
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        finish(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      }, timeoutMs);
      const readStatus = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) message = decodeURIComponent(String(h["grpc-message"]));
      };
      req.on("response", (h) => {
        if (h[":status"] !== 200) return finish(new ConnectError(`HTTP ${h[":status"]}`, Code.Unknown));
        readStatus(h); // trailers-only responses carry the status in the headers
      });
      req.on("trailers", readStatus);
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("error", (error) => finish(new ConnectError(error.message, Code.Unavailable)));
      req.on("close", () => {
        if (settled) return;
        if (status === undefined) return finish(new ConnectError(`stream closed without a status (rst ${req.rstCode})`, Code.Unavailable));
        if (status !== "0") return finish(new ConnectError(message ?? "", Number(status) as Code));
        const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        if (data.length < 5) return finish(new ConnectError("response without a message", Code.Internal));
        const length = data.readUInt32BE(1);
        try {
          finish(null, fromBinary(method.output, data.subarray(5, 5 + length)));
        } catch (error) {
          finish(new ConnectError(`bad response: ${(error as Error).message}`, Code.Internal));
        }
      });
      req.end(frame);
    });
  }

  close(): void {
    this.#session?.destroy();
    this.#session = null;
    open.delete(this);
  }
}
