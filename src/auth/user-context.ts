/** The authenticated caller, carried in Connect context values for one request. */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { UnauthenticatedError } from "../errors.ts";

export interface Caller {
  /** The token's subject: the user's id. */
  readonly userId: string;
  /** True when the token grants Parley-wide admin rights (moderation, later). */
  readonly admin: boolean;
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/** The caller of this request; every RPC but health and reflection has one. */
export function requireCaller(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new UnauthenticatedError();
  return caller;
}
