/** HTTP/2 connections (one Http2SessionManager each) that are closed at cleanup. */
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { onCleanup } from "./cleanup.ts";

export interface Connection {
  transport: Transport;
  sessionManager: Http2SessionManager;
}

const open = new Set<Http2SessionManager>();
onCleanup("close HTTP/2 connections", () => closeAll(), { first: true });

/** One gRPC (HTTP/2 cleartext) connection to baseUrl, opened lazily on first call. */
export function grpcConnection(baseUrl: string): Connection {
  const sessionManager = new Http2SessionManager(baseUrl);
  open.add(sessionManager);
  return { transport: createGrpcTransport({ baseUrl, sessionManager }), sessionManager };
}

/** n gRPC connections to baseUrl. */
export function grpcConnections(baseUrl: string, n: number): Connection[] {
  return Array.from({ length: n }, () => grpcConnection(baseUrl));
}

export function closeConnections(connections: readonly Connection[]): void {
  for (const c of connections) {
    c.sessionManager.abort();
    open.delete(c.sessionManager);
  }
}

export function closeAll(): void {
  for (const manager of open) manager.abort();
  open.clear();
}
