/**
 * An independent client: @grpc/grpc-js with the contract loaded at run time from proto/ by
 * @grpc/proto-loader, sharing no generated code with the server. This is what a backend team
 * that only has the .proto files would do.
 *
 * google/protobuf/timestamp.proto is not in proto/: protobufjs (under proto-loader) bundles the
 * well-known types and resolves any google/protobuf/*.proto import to them before it looks in
 * includeDirs.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = fileURLToPath(new URL("../../proto", import.meta.url));

type Callback = (err: grpc.ServiceError | null, res: any) => void;
type UnaryMethod = (req: object, metadata: grpc.Metadata, callback: Callback) => grpc.ClientUnaryCall;
export type ServiceClient = grpc.Client & Record<string, UnaryMethod>;
type ServiceClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => ServiceClient;

/** The parley.v1 services of these .proto files (paths under proto/), by service name. */
export function loadServices<Name extends string>(protoFiles: readonly string[]): Record<Name, ServiceClientConstructor> {
  const definition = protoLoader.loadSync([...protoFiles], {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // the wire names from the .proto, not camelCase
    longs: String,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { parley: { v1: Record<Name, ServiceClientConstructor> } };
  return loaded.parley.v1;
}

/** A unary call, as a promise. */
export function call(client: ServiceClient, method: string, req: object, metadata: grpc.Metadata): Promise<any> {
  return new Promise((resolve, reject) => {
    const fn = client[method];
    if (typeof fn !== "function") {
      reject(new Error(`no method ${method}`));
      return;
    }
    fn.call(client, req, metadata, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Asserts the call fails with the status code; returns the error. */
export async function expectStatus(promise: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    const se = err as grpc.ServiceError;
    assert.equal(se.code, code, `expected ${grpc.status[code]}, got ${grpc.status[se.code]}: ${se.details}`);
    return se;
  }
  assert.fail(`expected ${grpc.status[code]}, but the call succeeded`);
}
