/**
 * What a restricted user is told, read by an independent client: @grpc/grpc-js with the
 * contract loaded from proto/ at run time, and grpc-status-details-bin decoded by hand from the
 * field numbers of google.rpc.Status, google.rpc.ErrorInfo and parley.v1.AccountRestriction
 * (see support.ts), sharing no code with the server.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { ModerationAction } from "../../gen/parley/v1/moderation_pb.ts";
import { call, expectStatus, loadServices, type ServiceClient } from "../helpers/grpc-js.ts";
import { newUsers } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import {
  decodeAccountRestriction,
  decodeErrorInfo,
  decodeStatus,
  moderationServer,
  msOf,
  newOperator,
  secondsFromNow,
  type ModerationServer,
} from "./support.ts";

const services = loadServices<"UserService" | "MessageService" | "EventService">([
  "parley/v1/user_service.proto",
  "parley/v1/message_service.proto",
  "parley/v1/event_service.proto",
]);

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** The restriction a grpc-js client finds in the error's grpc-status-details-bin. */
function restrictionDetails(err: grpc.ServiceError, what: string) {
  const [bin] = err.metadata.get("grpc-status-details-bin");
  assert.ok(Buffer.isBuffer(bin) && bin.length > 0, `${what}: grpc-status-details-bin is present`);
  const status = decodeStatus(bin);
  assert.equal(status.code, grpc.status.PERMISSION_DENIED, `${what}: the Status in the details has the same code`);
  const infos = status.details.filter((d) => d.typeUrl === "type.googleapis.com/google.rpc.ErrorInfo").map((d) => decodeErrorInfo(d.value));
  const restrictions = status.details
    .filter((d) => d.typeUrl === "type.googleapis.com/parley.v1.AccountRestriction")
    .map((d) => decodeAccountRestriction(d.value));
  assert.equal(restrictions.length, 1, `${what}: one parley.v1.AccountRestriction; details are ${status.details.map((d) => d.typeUrl).join(", ")}`);
  return { infos, restriction: restrictions[0]! };
}

/** Opens Subscribe and returns the error it ends with (or fails if it streams). */
function subscribeError(client: grpc.Client, md: grpc.Metadata): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    const stream = (client as unknown as { Subscribe(req: object, md: grpc.Metadata): grpc.ClientReadableStream<unknown> }).Subscribe({}, md);
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error("Subscribe was not refused within 8 s"));
    }, 8_000);
    stream.on("data", () => {
      clearTimeout(timer);
      stream.cancel();
      reject(new Error("Subscribe streamed a frame to a restricted user"));
    });
    stream.on("error", (err: grpc.ServiceError) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

describe("restriction details seen by an independent @grpc/grpc-js client", () => {
  let server: ModerationServer;
  let users: ServiceClient;
  let messages: ServiceClient;
  let events: ServiceClient;

  before(async () => {
    server = await moderationServer();
    const address = `127.0.0.1:${server.port}`;
    const credentials = grpc.credentials.createInsecure();
    users = new services.UserService(address, credentials);
    messages = new services.MessageService(address, credentials);
    events = new services.EventService(address, credentials);
  });
  after(() => {
    for (const c of [users, messages, events]) c?.close();
  });

  async function auth(userId: string): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${await server.tokenFor(userId)}`);
    return md;
  }

  it("a suspension: PERMISSION_DENIED with ErrorInfo ACCOUNT_SUSPENDED (until in RFC 3339) and an AccountRestriction, on writes and Subscribe; reads work", async () => {
    const [user, peer, third] = await newUsers(server, 3, "gjsusp");
    const conv = await createGroup(server.clientsFor(peer!, "grpc"), [user!, third!]);
    await sendText(server.clientsFor(user!, "grpc"), conv.id, "before");
    const op = newOperator(server, "grpc");
    const until = secondsFromNow(3600);
    const untilMs = msOf(until, "until");
    await op.clients.admin.restrictUser({ userId: user!, action: ModerationAction.SUSPEND, suspendUntil: until, reason: "time out" });

    const md = await auth(user!);
    const err = await expectStatus(
      call(messages, "SendMessage", { conversation_id: conv.id, client_message_id: randomUUID(), text: "let me in" }, md),
      grpc.status.PERMISSION_DENIED,
    );
    const { infos, restriction } = restrictionDetails(err, "SendMessage");
    const info = infos.find((i) => i.reason === "ACCOUNT_SUSPENDED");
    assert.ok(info, `an ErrorInfo with reason ACCOUNT_SUSPENDED; got ${JSON.stringify(infos)}`);
    assert.match(info.metadata["until"] ?? "", RFC3339, "metadata until is RFC 3339");
    assert.equal(Date.parse(info.metadata["until"]!), untilMs, "metadata until is the suspension's end");
    assert.deepEqual(restriction, { userId: user, kind: 1, untilMs, reason: "time out" }, "AccountRestriction: the user, SUSPENDED, until, reason");

    const listed = await call(messages, "ListMessages", { conversation_id: conv.id }, md);
    assert.equal(listed.messages.length, 1, "a suspended user still reads");

    const subErr = await subscribeError(events, md);
    assert.equal(subErr.code, grpc.status.PERMISSION_DENIED, `Subscribe: ${subErr.details}`);
    const sub = restrictionDetails(subErr, "Subscribe");
    assert.ok(sub.infos.some((i) => i.reason === "ACCOUNT_SUSPENDED" && Date.parse(i.metadata["until"] ?? "") === untilMs), "Subscribe: the same ErrorInfo");
    assert.deepEqual(sub.restriction, restriction, "Subscribe: the same AccountRestriction");
    await op.clients.admin.liftRestriction({ userId: user! });
  });

  it("a ban: ErrorInfo ACCOUNT_BANNED without until, on reads too", async () => {
    const [user] = await newUsers(server, 1, "gjban");
    const op = newOperator(server, "grpc");
    await op.clients.admin.restrictUser({ userId: user!, action: ModerationAction.BAN, reason: "gone" });
    const err = await expectStatus(call(users, "GetMe", {}, await auth(user!)), grpc.status.PERMISSION_DENIED);
    const { infos, restriction } = restrictionDetails(err, "GetMe");
    const info = infos.find((i) => i.reason === "ACCOUNT_BANNED");
    assert.ok(info, `an ErrorInfo with reason ACCOUNT_BANNED; got ${JSON.stringify(infos)}`);
    assert.ok(!info.metadata["until"], "no until for a ban");
    assert.deepEqual(restriction, { userId: user, kind: 2, untilMs: undefined, reason: "gone" }, "AccountRestriction: the user, BANNED, no until, reason");
    await op.clients.admin.liftRestriction({ userId: user! });
    await call(users, "GetMe", {}, await auth(user!));
  });
});
