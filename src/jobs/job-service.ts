/** JobService: asynchronous jobs (placeholder until jobs land). */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { JobService as JobServiceDesc } from "../../gen/parley/v1/job_service_pb.ts";

export class JobService implements ServiceImpl<typeof JobServiceDesc> {
  async startExport(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async startReindex(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  // eslint-disable-next-line require-yield
  async *watchJob(): AsyncGenerator<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async cancelJob(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async listJobs(): Promise<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
  async *downloadJobOutput(): AsyncGenerator<never> {
    throw new ConnectError("not built yet", Code.Unimplemented);
  }
}
