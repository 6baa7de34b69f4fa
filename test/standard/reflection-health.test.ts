import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { file_grpc_health_v1_health, Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection, ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import { ConversationService, file_parley_v1_conversation_service } from "../../gen/parley/v1/conversation_service_pb.ts";
import { file_parley_v1_message_service, MessageService } from "../../gen/parley/v1/message_service_pb.ts";
import { file_parley_v1_user_service, UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { HealthStatus, registerHealth } from "../../src/standard/health.ts";
import { createFileRegistryOf, registerReflection } from "../../src/standard/reflection.ts";

const protoDir = new URL("../../proto", import.meta.url).pathname;
const bufPath = new URL("../../node_modules/.bin/buf", import.meta.url).pathname;

/** A response as @grpc/proto-loader decodes it with keepCase and oneofs. */
interface ReflectionResponse {
  message_response: string;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
  original_request?: Record<string, unknown>;
}

interface HealthClient extends grpc.Client {
  Check(request: { service: string }, callback: (err: grpc.ServiceError | null, response: { status: string }) => void): void;
  Watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

interface ReflectionClient extends grpc.Client {
  ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse>;
}

/** An independent client, built from the .proto files rather than from gen/. */
function grpcClient<T extends grpc.Client>(file: string, service: string, port: number): T {
  const definition = protoLoader.loadSync(file, { includeDirs: [protoDir], keepCase: true, enums: String, oneofs: true });
  let node: unknown = grpc.loadPackageDefinition(definition);
  for (const part of service.split(".")) node = (node as Record<string, unknown>)[part];
  const Client = node as grpc.ServiceClientConstructor;
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as T;
}

/** Sends the requests on one bidi stream and collects every response until the server ends it. */
function reflect(client: ReflectionClient, ...requests: object[]): Promise<ReflectionResponse[]> {
  return new Promise((resolve, reject) => {
    const responses: ReflectionResponse[] = [];
    const call = client.ServerReflectionInfo();
    call.on("data", (response: ReflectionResponse) => responses.push(response));
    call.on("error", reject);
    call.on("end", () => resolve(responses));
    for (const request of requests) call.write(request);
    call.end();
  });
}

function fileNames(response: ReflectionResponse | undefined): string[] {
  assert.equal(response?.message_response, "file_descriptor_response", JSON.stringify(response?.error_response));
  return response.file_descriptor_response!.file_descriptor_proto.map(
    (bytes) => fromBinary(FileDescriptorProtoSchema, new Uint8Array(bytes)).name,
  );
}

describe("standard health and reflection services", () => {
  const status = new HealthStatus();
  let server: http2.Http2Server;
  let port: number;
  const clients: grpc.Client[] = [];

  before(async () => {
    const registry = createFileRegistryOf(
      file_parley_v1_message_service,
      file_parley_v1_conversation_service,
      file_parley_v1_user_service,
      file_grpc_health_v1_health,
      file_grpc_reflection_v1_reflection,
    );
    const services = [MessageService, ConversationService, UserService, Health, ServerReflection].map((s) => s.typeName);
    server = http2.createServer(
      connectNodeAdapter({
        routes(router) {
          registerHealth(router, status);
          registerReflection(router, registry, services);
        },
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    status.set(MessageService.typeName, ServingStatus.SERVING);
  });

  after(async () => {
    for (const client of clients) client.close();
    await new Promise((resolve) => server.close(resolve));
  });

  function client<T extends grpc.Client>(file: string, service: string): T {
    const c = grpcClient<T>(file, service, port);
    clients.push(c);
    return c;
  }

  describe("health", () => {
    let health: HealthClient;
    before(() => {
      health = client<HealthClient>("grpc/health/v1/health.proto", "grpc.health.v1.Health");
    });
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        health.Check({ service }, (err, res) => (err ? reject(err) : resolve(res))),
      );

    it("reports the server and a registered service as SERVING", async () => {
      assert.equal((await check("")).status, "SERVING");
      assert.equal((await check(MessageService.typeName)).status, "SERVING");
    });

    it("answers NOT_FOUND for a service it does not know", async () => {
      await assert.rejects(check("no.such.Service"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    });

    it("streams the current status to a watcher and then every change", async () => {
      const call = health.Watch({ service: "parley.v1.Watched" });
      call.on("error", () => {}); // CANCELLED, once we hang up below
      const updates = call[Symbol.asyncIterator]();
      assert.equal((await updates.next()).value.status, "SERVICE_UNKNOWN");
      status.set("parley.v1.Watched", ServingStatus.SERVING);
      assert.equal((await updates.next()).value.status, "SERVING");
      status.set("parley.v1.Watched", ServingStatus.NOT_SERVING);
      assert.equal((await updates.next()).value.status, "NOT_SERVING");
      call.cancel();
    });
  });

  describe("HealthStatus", () => {
    it("marks everything NOT_SERVING on shutdown and ignores later updates", () => {
      const local = new HealthStatus();
      local.set("a", ServingStatus.SERVING);
      local.shutdown();
      local.set("a", ServingStatus.SERVING);
      assert.equal(local.get(""), ServingStatus.NOT_SERVING);
      assert.equal(local.get("a"), ServingStatus.NOT_SERVING);
    });

    it("ends a watch when its signal aborts", async () => {
      const local = new HealthStatus();
      const abort = new AbortController();
      const seen: ServingStatus[] = [];
      for await (const current of local.watch("", abort.signal)) {
        seen.push(current);
        abort.abort();
      }
      assert.deepEqual(seen, [ServingStatus.SERVING]);
    });
  });

  for (const version of ["v1", "v1alpha"]) {
    describe(`reflection ${version}`, () => {
      let reflection: ReflectionClient;
      before(() => {
        reflection = client<ReflectionClient>(`grpc/reflection/${version}/reflection.proto`, `grpc.reflection.${version}.ServerReflection`);
      });

      it("lists the routed services", async () => {
        const [response] = await reflect(reflection, { host: "parley", list_services: "" });
        const names = response?.list_services_response?.service.map((s) => s.name);
        assert.ok(names?.includes("parley.v1.MessageService"), String(names));
        assert.ok(names?.includes("grpc.health.v1.Health"), String(names));
      });

      it("returns a service's file first, followed by everything it imports", async () => {
        const [response] = await reflect(reflection, { host: "parley", file_containing_symbol: "parley.v1.MessageService" });
        const names = fileNames(response);
        assert.equal(names[0], "parley/v1/message_service.proto");
        assert.deepEqual(new Set(names), new Set(["parley/v1/message_service.proto", "parley/v1/message.proto", "google/protobuf/timestamp.proto"]));
        assert.equal(names.length, new Set(names).size);
      });

      it("resolves methods, nested enums and file names on one stream", async () => {
        const responses = await reflect(
          reflection,
          { file_containing_symbol: "parley.v1.MessageService.SendMessage" },
          { file_containing_symbol: "grpc.health.v1.HealthCheckResponse.ServingStatus" },
          { file_by_filename: "parley/v1/message.proto" },
          { file_by_filename: "google/protobuf/timestamp.proto" },
        );
        assert.deepEqual(
          responses.map((r) => fileNames(r)[0]),
          ["parley/v1/message_service.proto", "grpc/health/v1/health.proto", "parley/v1/message.proto", "google/protobuf/timestamp.proto"],
        );
      });

      it("answers an unknown symbol with error_response NOT_FOUND and echoes the request", async () => {
        const [response] = await reflect(reflection, { host: "h", file_containing_symbol: "parley.v1.Nope" });
        assert.equal(response?.message_response, "error_response");
        assert.equal(response.error_response?.error_code, grpc.status.NOT_FOUND);
        assert.equal(response.original_request?.file_containing_symbol, "parley.v1.Nope");
      });

      it("answers extension queries from the registry", async () => {
        const [numbers, missing, unknownType] = await reflect(
          reflection,
          { all_extension_numbers_of_type: "parley.v1.Message" },
          { file_containing_extension: { containing_type: "parley.v1.Message", extension_number: 100 } },
          { all_extension_numbers_of_type: "parley.v1.Nope" },
        );
        assert.equal(numbers?.message_response, "all_extension_numbers_response");
        assert.equal(missing?.error_response?.error_code, grpc.status.NOT_FOUND);
        assert.equal(unknownType?.error_response?.error_code, grpc.status.NOT_FOUND);
      });

      it("answers a request with no question with INVALID_ARGUMENT", async () => {
        const [response] = await reflect(reflection, { host: "h" });
        assert.equal(response?.error_response?.error_code, grpc.status.INVALID_ARGUMENT);
      });
    });
  }

  describe("buf curl", () => {
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      it(`lists Parley's methods through ${protocol} reflection`, async function () {
        if (!existsSync(bufPath)) this.skip();
        const { stdout } = await promisify(execFile)(bufPath, [
          "curl",
          "--http2-prior-knowledge",
          "--protocol",
          "grpc",
          "--reflect-protocol",
          protocol,
          "--list-methods",
          `http://127.0.0.1:${port}`,
        ]);
        const methods = stdout.split("\n");
        assert.ok(methods.includes("parley.v1.MessageService/SendMessage"), stdout);
        assert.ok(methods.includes("grpc.health.v1.Health/Watch"), stdout);
      });
    }
  });
});
