/**
 * One TCP port for every protocol: a connection that opens with the HTTP/2 preface
 * ("PRI * HTTP/2.0", what gRPC clients send over cleartext) goes to an HTTP/2 server; any
 * other goes to an HTTP/1.1 server (Connect and gRPC-Web from browsers and curl). Both run
 * the same request handler.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** Bytes needed to tell "PRI" from "POST", "PUT", "GET", "OPTIONS"... */
const SNIFF_BYTES = 3;

export interface SinglePortServer {
  listen(port: number, host: string): Promise<number>;
  /** Stops accepting, asks clients to go away, and destroys what is left after graceMs. */
  close(graceMs: number): Promise<void>;
}

export function createSinglePortServer(handler: Handler): SinglePortServer {
  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, handler);
  // Keepalive pings keep idle mobile streams alive through proxies and NATs.
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const tcp = net.createServer((socket) => {
    // Without it, Nagle's algorithm holds HTTP/2 WINDOW_UPDATE frames back against the peer's
    // delayed ACKs, and a large upload (a 10 MiB story video) crawls at one window per ~80 ms.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      if (head.length < SNIFF_BYTES) return;
      socket.off("data", onData);
      socket.pause();
      const n = Math.min(head.length, PREFACE.length);
      // Put the sniffed bytes back into the paused socket's buffer. The HTTP/2 session reads
      // from the native handle, but first feeds itself whatever the socket already buffered
      // (Node's answer to protocol sniffing, nodejs/node#35475), so the HTTP/2 path keeps the
      // native fast path instead of going through a JS stream wrapper.
      socket.unshift(head);
      if (head.subarray(0, n).equals(PREFACE.subarray(0, n))) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
    socket.on("error", () => socket.destroy());
  });

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(port, host, () => {
          tcp.off("error", reject);
          resolve((tcp.address() as net.AddressInfo).port);
        });
      });
    },
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
      const timer = setTimeout(() => sockets.forEach((socket) => socket.destroy()), graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
