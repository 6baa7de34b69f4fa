/**
 * The standard gRPC server reflection protocol, so grpcurl, `buf curl`, Postman and friends
 * can list and call Parley's services without a copy of its proto files.
 */
import { create, createFileRegistry, fromBinary, toBinary, type DescFile, type DescMessage, type FileRegistry, type MessageShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";

type Answer = v1.ServerReflectionResponse["messageResponse"];

/**
 * Registers grpc.reflection.v1.ServerReflection and its predecessor v1alpha, which many
 * deployed tools still ask for first, answering both from one implementation.
 *
 * `registry` must hold every file the listed services need, with their imports (one from
 * createFileRegistryOf below does). `serviceNames` are fully qualified and
 * are what list_services reports: only the services actually routed, not every one the
 * registry happens to know.
 */
export function registerReflection(router: ConnectRouter, registry: FileRegistry, serviceNames: string[]): void {
  const respond = (request: v1.ServerReflectionRequest): v1.ServerReflectionResponse =>
    create(v1.ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse: answer(registry, serviceNames, request.messageRequest),
    });
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield respond(request);
    },
  });
  // v1alpha is wire-identical to v1 under another package name, so re-encode rather than
  // keep a second copy of the logic.
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        const response = respond(convert(v1alpha.ServerReflectionRequestSchema, v1.ServerReflectionRequestSchema, request));
        yield convert(v1.ServerReflectionResponseSchema, v1alpha.ServerReflectionResponseSchema, response);
      }
    },
  });
}

/**
 * A FileRegistry holding the given generated files and everything they import, which is what
 * registerReflection needs. createFileRegistry itself only merges registries, so each file is
 * turned into one first, its imports resolved from the generated descriptors.
 */
export function createFileRegistryOf(...files: DescFile[]): FileRegistry {
  return createFileRegistry(
    ...files.map((file) => createFileRegistry(file.proto, (name) => file.dependencies.find((dep) => dep.proto.name === name))),
  );
}

function answer(registry: FileRegistry, serviceNames: string[], request: v1.ServerReflectionRequest["messageRequest"]): Answer {
  switch (request.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: create(v1.ListServiceResponseSchema, { service: serviceNames.map((name) => ({ name })) }),
      };
    case "fileByFilename":
      return fileResponse(registry.getFile(request.value), `file ${request.value}`);
    case "fileContainingSymbol":
      return fileResponse(fileContainingSymbol(registry, request.value), `symbol ${request.value}`);
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = request.value;
      const extendee = registry.getMessage(containingType);
      const extension = extendee && registry.getExtensionFor(extendee, extensionNumber);
      return fileResponse(extension?.file, `extension ${extensionNumber} of ${containingType}`);
    }
    case "allExtensionNumbersOfType": {
      // Like grpc-go: a known message with no extensions gets an empty list, not an error.
      const extendee = registry.getMessage(request.value);
      if (!extendee) return errorResponse(Code.NotFound, `message ${request.value} not found`);
      const numbers = [...registry].flatMap((type) =>
        type.kind === "extension" && type.extendee.typeName === extendee.typeName ? [type.number] : [],
      );
      return {
        case: "allExtensionNumbersResponse",
        value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: extendee.typeName, extensionNumber: numbers }),
      };
    }
    default:
      return errorResponse(Code.InvalidArgument, "unsupported reflection request");
  }
}

/** The file defining a message, enum, extension, service or method (nested names included). */
function fileContainingSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const name = symbol.replace(/^\./, "");
  const type = registry.get(name);
  if (type) return type.file;
  const dot = name.lastIndexOf(".");
  const service = registry.getService(name.slice(0, dot));
  return service?.methods.some((method) => method.name === name.slice(dot + 1)) ? service.file : undefined;
}

/**
 * The requested file followed by all its transitive imports: clients cannot build a
 * descriptor without them. The requested file comes first because older grpcurl versions
 * take the first descriptor as the answer.
 */
function fileResponse(file: DescFile | undefined, what: string): Answer {
  if (!file) return errorResponse(Code.NotFound, `${what} not found`);
  const files = new Map<string, DescFile>();
  const visit = (f: DescFile): void => {
    if (files.has(f.proto.name)) return;
    files.set(f.proto.name, f);
    f.dependencies.forEach(visit);
  };
  visit(file);
  return {
    case: "fileDescriptorResponse",
    value: create(v1.FileDescriptorResponseSchema, {
      fileDescriptorProto: [...files.values()].map((f) => toBinary(FileDescriptorProtoSchema, f.proto)),
    }),
  };
}

/** Reflection reports failures in-band: the stream stays open for the next request. */
function errorResponse(code: Code, message: string): Answer {
  return { case: "errorResponse", value: create(v1.ErrorResponseSchema, { errorCode: code, errorMessage: message }) };
}

function convert<To extends DescMessage>(from: DescMessage, to: To, message: MessageShape<DescMessage>): MessageShape<To> {
  return fromBinary(to, toBinary(from, message));
}
