/**
 * Enforces suspensions and bans on every call, right after authentication:
 * - a suspended user may read, but every write (Subscribe included) is PERMISSION_DENIED;
 * - a banned user may call nothing;
 * - either may still delete their account.
 * The refusal carries the restriction (ErrorInfo metadata `until` and an AccountRestriction
 * detail) so a client can tell the user until when.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Interceptor } from "@connectrpc/connect";
import { AccountRestrictionSchema, RestrictionKind } from "../../gen/parley/v1/moderation_pb.ts";
import { UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { callerKey } from "../auth/user-context.ts";
import { PermissionDeniedError } from "../errors.ts";
import { isReadOnly } from "../server/rpc-kind.ts";
import type { Restriction, RestrictionCache } from "./restriction-cache.ts";

/** The one call a restricted user may always make. */
const ALWAYS_ALLOWED = UserService.method.deleteAccount;

export function createRestrictionInterceptor(restrictions: RestrictionCache): Interceptor {
  return (next) => async (req) => {
    const caller = req.contextValues.get(callerKey);
    if (caller === undefined || req.method === ALWAYS_ALLOWED) return next(req);
    const restriction = restrictions.inForce(caller.userId);
    if (restriction && (restriction.kind === "banned" || !isReadOnly(req.method))) throw new AccountRestrictedError(caller.userId, restriction);
    return next(req);
  };
}

/** PERMISSION_DENIED for a suspended or banned account, saying until when. */
export class AccountRestrictedError extends PermissionDeniedError {
  constructor(userId: string, restriction: Restriction) {
    const suspended = restriction.kind === "suspended";
    const until = restriction.until?.toISOString();
    super(
      suspended ? `the account is suspended until ${until}` : "the account is banned",
      suspended ? "ACCOUNT_SUSPENDED" : "ACCOUNT_BANNED",
      until ? { until } : {},
      [
        {
          desc: AccountRestrictionSchema,
          value: create(AccountRestrictionSchema, {
            userId,
            kind: suspended ? RestrictionKind.SUSPENDED : RestrictionKind.BANNED,
            ...(restriction.until && { until: timestampFromDate(restriction.until) }),
            reason: restriction.reason,
          }),
        },
      ],
    );
  }
}
