import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { MAIN_PROTOCOLS, registerUsers, startTestServer, uniqueId, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectInvalidArgument } from "../helpers/expect.ts";
import { ms } from "../helpers/fixtures.ts";

describe("UserService", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  for (const protocol of MAIN_PROTOCOLS) {
    describe(`over ${protocol}`, () => {
      it("creates the user on the first GetMe, with the token's subject as id", async () => {
        const id = uniqueId("newcomer");
        const other = uniqueId("observer");
        await registerUsers(server, [other]);
        const before = await server.clientsFor(other, protocol).users.batchGetUsers({ userIds: [id] });
        assert.equal(before.users.length, 0, "the user must not exist before their first call");

        const res = await server.clientsFor(id, protocol).users.getMe({});
        assert.equal(res.user?.id, id);
        assert.ok(res.user?.createdAt, "created_at is set");

        const seen = await server.clientsFor(other, protocol).users.getUser({ userId: id });
        assert.equal(seen.user?.id, id);
      });

      it("returns the same user on every later GetMe", async () => {
        const id = uniqueId("repeat");
        const clients = server.clientsFor(id, protocol);
        const first = await clients.users.getMe({});
        const second = await clients.users.getMe({});
        assert.equal(second.user?.id, id);
        assert.equal(ms(second.user?.createdAt), ms(first.user?.createdAt));
      });

      it("creates exactly one user when first calls race", async () => {
        const id = uniqueId("racer");
        const results = await Promise.all(
          Array.from({ length: 8 }, () => server.clientsFor(id, protocol).users.getMe({})),
        );
        const created = new Set(results.map((r) => ms(r.user?.createdAt)));
        assert.equal(created.size, 1, "every racing GetMe sees the same user row");
      });
    });
  }

  it("returns NOT_FOUND from GetUser for an id that never called", async () => {
    const me = uniqueId("asker");
    await expectCode(server.clientsFor(me).users.getUser({ userId: uniqueId("ghost") }), Code.NotFound);
  });

  it("returns the existing users from BatchGetUsers in the order asked, leaving out unknown ids", async () => {
    const [a, b, c] = [uniqueId("a"), uniqueId("b"), uniqueId("c")];
    await registerUsers(server, [a, b, c]);
    const res = await server.clientsFor(a).users.batchGetUsers({ userIds: [c, uniqueId("ghost"), a, b] });
    assert.deepEqual(res.users.map((u) => u.id), [c, a, b]);
  });

  it("rejects BatchGetUsers with more than 100 ids", async () => {
    const me = uniqueId("bulk");
    const ids = Array.from({ length: 101 }, () => uniqueId("x"));
    await expectInvalidArgument(server.clientsFor(me).users.batchGetUsers({ userIds: ids }), "user_ids");
  });

  it("changes only the fields that are set in UpdateProfile", async () => {
    const id = uniqueId("profile");
    const clients = server.clientsFor(id);
    await clients.users.getMe({});
    const named = await clients.users.updateProfile({ displayName: "Ada Lovelace" });
    assert.equal(named.user?.displayName, "Ada Lovelace");
    const untouched = await clients.users.updateProfile({});
    assert.equal(untouched.user?.displayName, "Ada Lovelace");
    const me = await clients.users.getMe({});
    assert.equal(me.user?.displayName, "Ada Lovelace");
  });

  it("accepts a 64-character display name and rejects a 65-character one, naming display_name", async () => {
    const id = uniqueId("longname");
    const clients = server.clientsFor(id);
    await clients.users.getMe({});
    await clients.users.updateProfile({ displayName: "n".repeat(64) });
    await expectInvalidArgument(clients.users.updateProfile({ displayName: "m".repeat(65) }), "display_name");
    const me = await clients.users.getMe({});
    assert.equal(me.user?.displayName, "n".repeat(64), "a rejected update changes nothing");
  });
});
