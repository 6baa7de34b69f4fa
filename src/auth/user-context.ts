/** The authenticated caller, carried in Connect context values for one request. */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { UnauthenticatedError } from "../errors.ts";

/**
 * Deployment-wide roles a token can grant in its `roles` claim (an array of strings):
 * - "operator": runs the deployment; may call AdminService, and is never rate-limited;
 * - "service": a service account (a moderation bot, an integration); never rate-limited.
 * Unknown role names are ignored, so an identity provider may carry roles of its own.
 */
export type Role = "operator" | "service";

export const ROLES: readonly Role[] = ["operator", "service"];

export interface Caller {
  /** The token's subject: the user's id. */
  readonly userId: string;
  /** May moderate the deployment (AdminService). */
  readonly operator: boolean;
  /** A service account: exempt from rate limits like an operator, with no admin powers. */
  readonly service: boolean;
}

/** Whether rate limits apply to this caller (operators and service accounts are exempt). */
export function isRateLimitExempt(caller: Caller): boolean {
  return caller.operator || caller.service;
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/** The caller of this request; every RPC but health and reflection has one. */
export function requireCaller(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw new UnauthenticatedError();
  return caller;
}
