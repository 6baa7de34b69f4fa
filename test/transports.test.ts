import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { newUsers, startTestServer, uniqueId, type Protocol, type TestServer } from "./helpers/test-server.ts";
import { createGroup, everyByte } from "./helpers/fixtures.ts";

describe("one port for every protocol", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  const protocols: Protocol[] = ["grpc", "connect", "connect-json", "connect-get", "connect-h2", "grpc-web"];

  for (const protocol of protocols) {
    it(`serves a whole conversation over ${protocol}`, async () => {
      const [a, b, c] = await newUsers(server, 3, protocol);
      const clients = server.clientsFor(a!, protocol);
      const me = await clients.users.getMe({});
      assert.equal(me.user?.id, a);

      const conv = await createGroup(clients, [b!, c!], `over ${protocol}`);
      const ciphertext = everyByte(40);
      const sent = await clients.messages.sendMessage({
        conversationId: conv.id,
        clientMessageId: randomUUID(),
        content: { case: "envelope", value: { ciphertext, nonce: new Uint8Array([0, 1, 2]), algorithm: "alg", keyId: "k1", keyEpoch: 2 } },
      });
      assert.equal(sent.message?.seq, 1n);

      const listed = await clients.messages.listMessages({ conversationId: conv.id });
      assert.equal(listed.messages.length, 1);
      const content = listed.messages[0]!.content;
      assert.equal(content.case, "envelope");
      if (content.case === "envelope") assert.deepEqual([...content.value.ciphertext], [...ciphertext]);

      const got = await clients.conversations.getConversation({ conversationId: conv.id });
      assert.equal(got.conversation?.lastSeq, 1n);
    });
  }

  it("answers a Connect GET for a side-effect-free RPC, as browsers and caches use it", async () => {
    const id = uniqueId("getter");
    const token = await server.tokenFor(id);
    const url = `${server.baseUrl}/parley.v1.UserService/GetMe?connect=v1&encoding=json&message=${encodeURIComponent("{}")}`;
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { user?: { id?: string } };
    assert.equal(body.user?.id, id);
  });

  it("speaks plain Connect JSON, as buf curl and curl do", async () => {
    const [a, b] = await newUsers(server, 2, "curl");
    const token = await server.tokenFor(a!);
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${server.baseUrl}/${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const created = await post("parley.v1.ConversationService/CreateConversation", {
      type: "CONVERSATION_TYPE_DIRECT",
      memberIds: [b!],
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const conversationId = created.body.conversation?.id as string;
    assert.ok(conversationId);
    assert.equal(created.body.conversation?.type, "CONVERSATION_TYPE_DIRECT");

    const sent = await post("parley.v1.MessageService/SendMessage", {
      conversationId,
      clientMessageId: "curl-1",
      text: "hi from curl",
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    assert.equal(sent.body.message?.seq, "1", "int64 is a JSON string");
    assert.equal(sent.body.message?.text, "hi from curl");

    const bad = await post("parley.v1.MessageService/SendMessage", { conversationId, clientMessageId: "curl-2", text: "" });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, "invalid_argument");

    const unauth = await fetch(`${server.baseUrl}/parley.v1.UserService/GetMe`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(unauth.status, 401);
    assert.equal(((await unauth.json()) as { code?: string }).code, "unauthenticated");

    const listed = await post("parley.v1.ConversationService/ListConversations", {});
    assert.equal(listed.status, 200);
    assert.deepEqual(
      (listed.body.conversations as Array<{ id: string; type: string }>).map((c) => [c.id, c.type]),
      [[conversationId, "CONVERSATION_TYPE_DIRECT"]],
    );
  });
});
