import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { SignJWT, UnsecuredJWT } from "jose";
import { MAIN_PROTOCOLS, newUsers, startTestServer, uniqueId, type Clients, type TestServer } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createGroup } from "../helpers/fixtures.ts";

describe("authentication", () => {
  let server: TestServer;
  let convId: string;
  let owner: string;
  before(async () => {
    server = await startTestServer();
    const [a, b, c] = await newUsers(server, 3, "authowner");
    owner = a!;
    convId = (await createGroup(server.clientsFor(owner), [b!, c!])).id;
  });
  after(async () => {
    await server?.stop();
  });

  const key = (secret: string) => new TextEncoder().encode(secret);

  /** Tokens the server must refuse, each with the reason it is bad. */
  async function badAuthorizations(): Promise<Array<[string, string | undefined]>> {
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>, secret = server.secret, alg = "HS256") =>
      new SignJWT(claims).setProtectedHeader({ alg, typ: "JWT" }).sign(key(secret));
    const good = { sub: uniqueId("mallory"), iss: server.issuer, aud: server.audience, iat: now, exp: now + 600 };
    return [
      ["no Authorization header", undefined],
      ["an empty bearer token", "Bearer "],
      ["a token that is not a JWT", "Bearer not-a-jwt"],
      ["a well-formed token signed with another secret", `Bearer ${await sign(good, randomBytes(32).toString("hex"))}`],
      ["an expired token", `Bearer ${await sign({ ...good, iat: now - 7200, exp: now - 3600 })}`],
      ["a token not valid yet", `Bearer ${await sign({ ...good, nbf: now + 3600 })}`],
      ["a token from another issuer", `Bearer ${await sign({ ...good, iss: "someone-else" })}`],
      ["a token for another audience", `Bearer ${await sign({ ...good, aud: "someone-else" })}`],
      ["a token without a subject", `Bearer ${await sign({ iss: good.iss, aud: good.aud, iat: now, exp: now + 600 })}`],
      ["a token signed with another algorithm (HS512) and the right secret", `Bearer ${await sign(good, server.secret, "HS512")}`],
      [
        "an unsigned token (alg none)",
        `Bearer ${new UnsecuredJWT({ sub: good.sub }).setIssuer(good.iss).setAudience(good.aud).setIssuedAt().setExpirationTime("10m").encode()}`,
      ],
      ["a valid token under another scheme", `Basic ${await sign(good)}`],
    ];
  }

  const calls: Array<[string, (c: Clients) => Promise<unknown>]> = [
    ["UserService.GetMe", (c) => c.users.getMe({})],
    ["UserService.UpdateProfile", (c) => c.users.updateProfile({ displayName: "intruder" })],
    ["ConversationService.ListConversations", (c) => c.conversations.listConversations({})],
    ["ConversationService.GetConversation", (c) => c.conversations.getConversation({ conversationId: convId })],
    [
      "MessageService.SendMessage",
      (c) =>
        c.messages.sendMessage({
          conversationId: convId,
          clientMessageId: randomUUID(),
          content: { case: "text", value: "sneaky" },
        }),
    ],
    ["MessageService.ListMessages", (c) => c.messages.listMessages({ conversationId: convId })],
  ];

  for (const protocol of MAIN_PROTOCOLS) {
    it(`answers UNAUTHENTICATED to every kind of bad credentials on every service (${protocol})`, async () => {
      for (const [reason, authorization] of await badAuthorizations()) {
        const clients = server.clientsWithAuthorization(authorization, protocol);
        for (const [name, call] of calls) {
          await expectCode(call(clients), Code.Unauthenticated).catch((err: Error) => {
            throw new Error(`${name} with ${reason}: ${err.message}`);
          });
        }
      }
    });
  }

  it("creates no user and stores no message for a rejected caller", async () => {
    const intruder = uniqueId("intruder");
    const now = Math.floor(Date.now() / 1000);
    const forged = await new SignJWT({ sub: intruder, iss: server.issuer, aud: server.audience, iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: "HS256" })
      .sign(key(randomBytes(32).toString("hex")));
    const clients = server.clientsWithAuthorization(`Bearer ${forged}`);
    await expectCode(clients.users.getMe({}), Code.Unauthenticated);
    await expectCode(
      clients.messages.sendMessage({ conversationId: convId, clientMessageId: randomUUID(), content: { case: "text", value: "x" } }),
      Code.Unauthenticated,
    );

    const looked = await server.clientsFor(owner).users.batchGetUsers({ userIds: [intruder] });
    assert.equal(looked.users.length, 0, "no user row for the forged subject");
    const history = await server.clientsFor(owner).messages.listMessages({ conversationId: convId });
    assert.equal(history.messages.length, 0, "no message was stored");
  });

  it("accepts a token minted with the server's secret, issuer and audience", async () => {
    const id = uniqueId("valid");
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sub: id, iss: server.issuer, aud: server.audience, iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(key(server.secret));
    const me = await server.clientsWithAuthorization(`Bearer ${token}`, "grpc").users.getMe({});
    assert.equal(me.user?.id, id);
  });

  it("accepts the bearer scheme written in lower case", async () => {
    const id = uniqueId("lower");
    const token = await server.tokenFor(id);
    const me = await server.clientsWithAuthorization(`bearer ${token}`).users.getMe({});
    assert.equal(me.user?.id, id);
  });

  it("does not leak why a token was refused beyond UNAUTHENTICATED", async () => {
    const err = await expectCode(
      server.clientsWithAuthorization("Bearer not-a-jwt").users.getMe({}),
      Code.Unauthenticated,
    );
    assert.doesNotMatch(err.rawMessage, /stack|at .*\.ts:\d+|node_modules/i);
  });
});
