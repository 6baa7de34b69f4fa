/**
 * Users, conversations and messages from an independent client: @grpc/grpc-js with the
 * contract loaded at run time from proto/ (see helpers/grpc-js.ts).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { call, expectStatus, loadServices, type ServiceClient } from "./helpers/grpc-js.ts";
import { newUsers, startTestServer, uniqueId, type TestServer } from "./helpers/test-server.ts";

const services = loadServices<"UserService" | "ConversationService" | "MessageService">([
  "parley/v1/user_service.proto",
  "parley/v1/conversation_service.proto",
  "parley/v1/message_service.proto",
]);

describe("an independent @grpc/grpc-js client", () => {
  let server: TestServer;
  let users: ServiceClient;
  let conversations: ServiceClient;
  let messages: ServiceClient;

  before(async () => {
    server = await startTestServer();
    const address = `127.0.0.1:${server.port}`;
    const credentials = grpc.credentials.createInsecure();
    users = new services.UserService(address, credentials);
    conversations = new services.ConversationService(address, credentials);
    messages = new services.MessageService(address, credentials);
  });
  after(async () => {
    for (const c of [users, conversations, messages]) c?.close();
    await server?.stop();
  });

  async function auth(userId: string): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    md.set("authorization", `Bearer ${await server.tokenFor(userId)}`);
    return md;
  }

  it("calls GetMe, creates a group, sends and lists messages", async () => {
    const me = uniqueId("grpcjs");
    const md = await auth(me);
    const got = await call(users, "GetMe", {}, md);
    assert.equal(got.user.id, me);

    const others = await newUsers(server, 2, "grpcjsfriend");
    const created = await call(
      conversations,
      "CreateConversation",
      { type: "CONVERSATION_TYPE_GROUP", member_ids: others, name: "grpc-js group", description: "made by grpc-js" },
      md,
    );
    assert.equal(created.created, true);
    const conv = created.conversation;
    assert.equal(typeof conv.id, "string");
    assert.equal(conv.type, "CONVERSATION_TYPE_GROUP");
    assert.equal(conv.member_count, 3);
    assert.equal(conv.my_role, "MEMBER_ROLE_ADMIN");
    assert.ok(conv.created_at?.seconds, "created_at is a google.protobuf.Timestamp");

    const clientMessageId = randomUUID();
    const first = await call(messages, "SendMessage", { conversation_id: conv.id, client_message_id: clientMessageId, text: "hello from grpc-js" }, md);
    assert.equal(first.message.seq, "1");
    assert.equal(first.message.sender_id, me);
    assert.equal(first.message.content, "text");
    const retry = await call(messages, "SendMessage", { conversation_id: conv.id, client_message_id: clientMessageId, text: "hello from grpc-js" }, md);
    assert.equal(retry.message.id, first.message.id);

    const ciphertext = Buffer.from([0, 1, 2, 253, 254, 255]);
    const sealed = await call(
      messages,
      "SendMessage",
      {
        conversation_id: conv.id,
        client_message_id: randomUUID(),
        envelope: { ciphertext, nonce: Buffer.from([9, 9]), algorithm: "alg", key_id: "k", key_epoch: 3 },
        reply_to_seq: "1",
      },
      md,
    );
    assert.equal(sealed.message.seq, "2");
    assert.equal(sealed.message.reply_to_seq, "1");

    const back = await call(messages, "ListMessages", { conversation_id: conv.id, page_size: 10 }, md);
    assert.deepEqual(back.messages.map((m: { seq: string }) => m.seq), ["2", "1"]);
    assert.equal(back.messages[0].content, "envelope");
    assert.deepEqual([...back.messages[0].envelope.ciphertext], [...ciphertext]);
    assert.equal(back.messages[1].text, "hello from grpc-js");
    assert.equal(back.next_page_token, "");

    const fwd = await call(messages, "ListMessages", { conversation_id: conv.id, page_size: 1, direction: "LIST_DIRECTION_FORWARD" }, md);
    assert.deepEqual(fwd.messages.map((m: { seq: string }) => m.seq), ["1"]);
    assert.notEqual(fwd.next_page_token, "");
    const fwd2 = await call(messages, "ListMessages", { conversation_id: conv.id, page_size: 1, page_token: fwd.next_page_token }, md);
    assert.deepEqual(fwd2.messages.map((m: { seq: string }) => m.seq), ["2"]);

    const list = await call(conversations, "ListConversations", {}, md);
    assert.deepEqual(list.conversations.map((c: { id: string }) => c.id), [conv.id]);
    assert.equal(list.conversations[0].last_message.encrypted, true);
  });

  it("gets UNAUTHENTICATED without a token", async () => {
    await expectStatus(call(users, "GetMe", {}, new grpc.Metadata()), grpc.status.UNAUTHENTICATED);
    await expectStatus(call(conversations, "ListConversations", {}, new grpc.Metadata()), grpc.status.UNAUTHENTICATED);
  });

  it("gets UNAUTHENTICATED with a token signed by someone else", async () => {
    const md = new grpc.Metadata();
    md.set("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
    await expectStatus(call(users, "GetMe", {}, md), grpc.status.UNAUTHENTICATED);
  });

  it("gets INVALID_ARGUMENT with google.rpc.BadRequest details in grpc-status-details-bin", async () => {
    const me = uniqueId("grpcjsbad");
    const md = await auth(me);
    const others = await newUsers(server, 2, "grpcjsbadfriend");
    const created = await call(conversations, "CreateConversation", { type: "CONVERSATION_TYPE_GROUP", member_ids: others, name: "g" }, md);
    const err = await expectStatus(
      call(messages, "SendMessage", { conversation_id: created.conversation.id, client_message_id: randomUUID(), text: "" }, md),
      grpc.status.INVALID_ARGUMENT,
    );
    const [details] = err.metadata.get("grpc-status-details-bin");
    assert.ok(Buffer.isBuffer(details) && details.length > 0, "grpc-status-details-bin is present");
    const raw = details.toString("latin1");
    assert.ok(raw.includes("type.googleapis.com/google.rpc.BadRequest"), "the details hold a google.rpc.BadRequest");
    assert.match(raw, /text/, "the BadRequest names the text field");
  });

  it("gets NOT_FOUND for a conversation the caller is not in", async () => {
    const [a, b, c, outsider] = await newUsers(server, 4, "grpcjsnf");
    const created = await call(conversations, "CreateConversation", { type: "CONVERSATION_TYPE_GROUP", member_ids: [b, c], name: "g" }, await auth(a!));
    await expectStatus(
      call(messages, "ListMessages", { conversation_id: created.conversation.id }, await auth(outsider!)),
      grpc.status.NOT_FOUND,
    );
  });
});
