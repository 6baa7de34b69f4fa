/** Registry rows → protobuf messages. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectionSchema, NodeConnectionCountSchema, type Connection, type NodeConnectionCount } from "../../gen/parley/v1/connection_service_pb.ts";
import type { LiveConnectionRow, NodeCountRow } from "./connection-repository.ts";

export function toConnection(row: LiveConnectionRow): Connection {
  return create(ConnectionSchema, {
    sessionId: row.session_id,
    userId: row.user_id,
    deviceId: row.device_id,
    nodeId: row.node_id,
    protocol: row.protocol,
    clientVersion: row.client_version,
    userAgent: row.user_agent,
    connectedAt: timestampFromDate(row.connected_at),
    lastHeartbeatAt: timestampFromDate(row.heartbeat_at),
  });
}

export function toNodeCount(row: NodeCountRow): NodeConnectionCount {
  return create(NodeConnectionCountSchema, { nodeId: row.node_id, connections: BigInt(row.connections), lastHeartbeatAt: timestampFromDate(row.heartbeat_at) });
}
