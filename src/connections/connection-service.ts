/** ConnectionService: the connection registry's API (placeholder until the registry lands). */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ConnectionService as ConnectionServiceDesc } from "../../gen/parley/v1/connection_service_pb.ts";

export class ConnectionService implements ServiceImpl<typeof ConnectionServiceDesc> {
  async listSessions(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async endSession(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async listConnections(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
}
