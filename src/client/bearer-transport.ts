/**
 * Adds the caller's bearer token to every call of a transport someone else built. The SDK takes
 * the transport from the app (Node and browsers build them differently) and cannot add an
 * interceptor to it afterwards, so it wraps it instead.
 */
import type { Transport } from "@connectrpc/connect";

/** Returns the current access token; called before every request, so it may refresh. */
export type TokenProvider = () => string | Promise<string>;

/** A transport that sends `Authorization: Bearer <token>` on every unary call and stream. */
export function withBearerToken(transport: Transport, token: TokenProvider): Transport {
  const authorize = async (header: ConstructorParameters<typeof Headers>[0]): Promise<Headers> => {
    const h = new Headers(header);
    h.set("authorization", `Bearer ${await token()}`);
    return h;
  };
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      return transport.unary(method, signal, timeoutMs, await authorize(header), input, contextValues);
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      return transport.stream(method, signal, timeoutMs, await authorize(header), input, contextValues);
    },
  };
}
