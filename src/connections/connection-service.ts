/**
 * ConnectionService: a user's own sessions (list, end one) and, for operators, every live
 * stream with the count per node. Reads come from the registry's tables (connection-registry.ts
 * fills them), counting only nodes whose heartbeat is within the TTL.
 *
 * Ending a session is an event: `session_ended` is appended to the log with the session's row
 * deleted, in one transaction, and reaches every node's feed hub; the stream with that session
 * id ends (END_REASON_SESSION_ENDED) on whichever node serves it, and the user's other streams
 * learn of it.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  EndSessionResponseSchema,
  ListConnectionsResponseSchema,
  ListSessionsResponseSchema,
  type ConnectionService as ConnectionServiceDesc,
  type EndSessionRequest,
  type ListConnectionsRequest,
} from "../../gen/parley/v1/connection_service_pb.ts";
import { SessionEndedSchema } from "../../gen/parley/v1/event_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { RegistryConfig } from "../config.ts";
import type { Database } from "../db/schema.ts";
import { FailedPreconditionError, InvalidInputError, NotFoundError, PermissionDeniedError } from "../errors.ts";
import { writeWithEvents, type EventPublisher } from "../log/index.ts";
import { decodePageToken, encodePageToken } from "../page-token.ts";
import { pageSize, requireUserId, requireUuid } from "../validation.ts";
import { countPerLiveNode, deleteLiveSession, listLiveConnections } from "./connection-repository.ts";
import { toConnection, toNodeCount } from "./connection-mapper.ts";

/** Most sessions ListSessions returns (one per signed-in app or tab: far more is abuse). */
const MAX_SESSIONS = 500;
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;
const MAX_NODE_ID = 200;

export interface ConnectionServiceOptions {
  db: Kysely<Database>;
  publisher: EventPublisher;
  config: RegistryConfig;
}

export class ConnectionService implements ServiceImpl<typeof ConnectionServiceDesc> {
  readonly #o: ConnectionServiceOptions;

  constructor(options: ConnectionServiceOptions) {
    this.#o = options;
  }

  async listSessions(_req: unknown, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    this.#requireEnabled();
    const rows = await listLiveConnections(this.#o.db, this.#o.config.nodeTtlMs, { userId, nodeId: null }, null, MAX_SESSIONS);
    return create(ListSessionsResponseSchema, { sessions: rows.map(toConnection) });
  }

  async endSession(req: EndSessionRequest, ctx: HandlerContext) {
    const caller = requireCaller(ctx);
    const sessionId = requireUuid("session_id", req.sessionId);
    this.#requireEnabled();
    await writeWithEvents(this.#o.db, this.#o.publisher, async (tx, recorded) => {
      const ended = await deleteLiveSession(tx, this.#o.config.nodeTtlMs, sessionId, caller.operator ? null : caller.userId);
      if (!ended) throw new NotFoundError("session");
      const byOperator = ended.user_id !== caller.userId;
      recorded.push({
        conversationId: null,
        targetUserId: ended.user_id,
        // As for moderation: a user learns that an operator ended the session, not which one.
        actorId: byOperator ? "" : caller.userId,
        kind: { case: "sessionEnded", value: create(SessionEndedSchema, { sessionId, byOperator }) },
      });
    });
    return create(EndSessionResponseSchema, {});
  }

  async listConnections(req: ListConnectionsRequest, ctx: HandlerContext) {
    const caller = requireCaller(ctx);
    if (!caller.operator) throw new PermissionDeniedError("the operator role is required", "OPERATOR_REQUIRED");
    const filter = {
      userId: req.userId === "" ? null : requireUserId("user_id", req.userId),
      nodeId: req.nodeId === "" ? null : requireNodeId(req.nodeId),
    };
    const limit = pageSize(req.pageSize, DEFAULT_PAGE, MAX_PAGE);
    const after = req.pageToken === "" ? null : decodeAfter(req.pageToken);
    this.#requireEnabled();
    const { db, config } = this.#o;
    const [rows, nodes] = await Promise.all([
      listLiveConnections(db, config.nodeTtlMs, filter, after, limit + 1),
      after === null ? countPerLiveNode(db, config.nodeTtlMs, filter.userId) : [],
    ]);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return create(ListConnectionsResponseSchema, {
      connections: page.map(toConnection),
      nextPageToken: rows.length > limit && last ? encodePageToken("connections", { t: last.micros, id: last.session_id }) : "",
      nodes: nodes.map(toNodeCount),
    });
  }

  #requireEnabled(): void {
    if (!this.#o.config.enabled) throw new FailedPreconditionError("the connection registry is off on this deployment (CONNECTION_REGISTRY=off)", "REGISTRY_OFF");
  }
}

function requireNodeId(value: string): string {
  if ([...value].length > MAX_NODE_ID) throw new InvalidInputError("node_id", `is longer than ${MAX_NODE_ID} characters`);
  return value;
}

function decodeAfter(token: string): { micros: string; id: string } {
  const { t, id } = decodePageToken("connections", token, ["t", "id"]);
  if (!/^-?\d{1,20}$/.test(String(t))) throw new InvalidInputError("page_token", "is not a token this call issued");
  return { micros: String(t), id: requireUuid("page_token", String(id)) };
}
