/**
 * The outermost interceptor: gives every RPC a request id (taken from X-Request-Id or
 * made up), maps every error to a clean Connect error, logs, and records metrics. An
 * unexpected error is logged with its cause and sent as INTERNAL without it.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { toConnectError } from "../errors.ts";
import type { RpcMetrics } from "./metrics.ts";

export function createObservabilityInterceptor(logger: Logger, metrics: RpcMetrics): Interceptor {
  return (next) => async (req) => {
    const requestId = req.header.get("x-request-id")?.slice(0, 128) || randomUUID();
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const started = performance.now();
    const finish = (code: Code | "ok", error?: unknown) => {
      const seconds = (performance.now() - started) / 1000;
      const codeName = code === "ok" ? "ok" : Code[code];
      metrics.observe(rpc, codeName, seconds);
      const fields = { requestId, rpc, code: codeName, ms: Math.round(seconds * 1000 * 10) / 10 };
      if (code === Code.Internal || code === Code.Unknown) logger.error({ ...fields, err: error }, "rpc failed unexpectedly");
      else if (code !== "ok") logger.info({ ...fields, message: (error as Error).message }, "rpc failed");
      else logger.debug(fields, "rpc");
    };
    const fail = (thrown: unknown): never => {
      // A client that hangs up mid-stream is not a server fault.
      if (req.signal.aborted && !(thrown instanceof ConnectError)) thrown = new ConnectError("the client went away", Code.Canceled);
      const { error, expected } = toConnectError(thrown);
      finish(error.code, expected ? error : thrown);
      error.metadata.set("x-request-id", requestId);
      throw error;
    };
    try {
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        finish("ok");
        return res;
      }
      return {
        ...res,
        message: (async function* () {
          try {
            yield* res.message;
            finish("ok");
          } catch (error) {
            fail(error);
          }
        })(),
      };
    } catch (error) {
      return fail(error);
    }
  };
}
