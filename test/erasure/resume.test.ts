/**
 * An erasure survives its run: while it is under way the user cannot write (reads still work);
 * a run that fails part-way is finished by the consumer nodes' periodic sweep, and one left
 * unfinished by a node that stopped is finished by the next node to start.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import type { ErasureFaults } from "../../src/users/index.ts";
import { createTestDatabase, newUsers, startTestServer, type FreshDatabase, type TestServer } from "../helpers/test-server.ts";
import { expectCode, expectOneOfCodes } from "../helpers/expect.ts";
import { createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { assertErased, holdOnce, sendMany } from "./support.ts";

const MESSAGES = 1_200;

describe("DeleteAccount interrupted", () => {
  let database: FreshDatabase | null;
  let dir: string;
  const servers: TestServer[] = [];
  before(async () => {
    database = await createTestDatabase();
    dir = await mkdtemp(path.join(tmpdir(), "parley-erasure-"));
  });
  after(async () => {
    for (const server of servers) await server.stop();
    await database?.drop();
    await rm(dir, { recursive: true, force: true });
  });
  /** A node on the shared data (PostgreSQL, or PGlite on disk), one after another. */
  const start = async (env: Record<string, string>, faults?: ErasureFaults) => {
    const storage = database ? {} : { PGLITE_PATH: path.join(dir, "pglite") };
    const server = await startTestServer({ DATA_DIR: dir, ...storage, ...env }, { ...(database && { databaseUrl: database.url }), ...(faults && { appOptions: { erasureFaults: faults } }) });
    servers.push(server);
    return server;
  };

  it("refuses the user's writes while it runs, and the sweep finishes a run that failed part-way", async function () {
    this.timeout(120_000);
    const hold = holdOnce();
    const server = await start({ ERASURE_SWEEP_INTERVAL_SECONDS: "1" }, hold.faults);
    const [e, a, b] = await newUsers(server, 3, "resume");
    const E = server.clientsFor(e!, "grpc");
    const A = server.clientsFor(a!, "connect");
    const group = await createGroup(E, [a!, b!]);
    await sendMany(E, group.id, Array.from({ length: MESSAGES }, (_, i) => `resumable ${i}`));

    const call = E.users.deleteAccount({ confirmUserId: e! });
    call.catch(() => undefined);
    await hold.held;
    // Part-way: some messages are tombstones already, and the user can read but not write.
    const midway = await listAllForward(A, group.id);
    assert.ok(midway.some((m) => m.deletion) && midway.some((m) => !m.deletion), "part-way through the messages");
    await expectCode(sendText(E, group.id, "sneaking in"), Code.FailedPrecondition);
    await expectCode(E.users.updateProfile({ displayName: "back" }), Code.FailedPrecondition);
    await expectCode(E.social.follow({ userId: a! }), Code.FailedPrecondition);
    await expectCode(E.conversations.createConversation({ type: ConversationType.DIRECT, memberIds: [a!] }), Code.FailedPrecondition);
    assert.equal((await E.users.getMe({})).user?.id, e, "reads still work");

    hold.fail();
    await expectOneOfCodes(call, [Code.Internal]);
    await eventually(async () => {
      try {
        await A.users.getUser({ userId: e! });
        return false;
      } catch {
        return true;
      }
    }, "the sweep finished the erasure", 20_000);
    const history = await listAllForward(A, group.id);
    assert.equal(history.length, MESSAGES);
    for (const m of history) assertErased(m, e!, `seq ${m.seq}`);
    const again = await E.users.deleteAccount({ confirmUserId: e! });
    assert.equal(again.messagesErased, 0n, "the id is a new, empty account now");
    assert.equal((await sendText(E, (await createGroup(E, [a!, b!])).id, "a new account writes")).seq, 1n);
  });

  it("is finished by the next node to start when a run stopped part-way and its node then stopped", async function () {
    this.timeout(120_000);
    const hold = holdOnce();
    // A sweep that would not come round during the test: only the start-up sweep can finish it.
    const first = await start({ ERASURE_SWEEP_INTERVAL_SECONDS: "3600" }, hold.faults);
    const [e, a, b] = await newUsers(first, 3, "restart");
    const group = await createGroup(first.clientsFor(e!, "grpc"), [a!, b!]);
    await sendMany(first.clientsFor(e!, "grpc"), group.id, Array.from({ length: MESSAGES }, (_, i) => `restart ${i}`));
    const call = first.clientsFor(e!, "grpc").users.deleteAccount({ confirmUserId: e! });
    call.catch(() => undefined);
    await hold.held;
    hold.fail();
    await call.catch(() => undefined);
    await first.stop();

    const second = await start({ ERASURE_SWEEP_INTERVAL_SECONDS: "3600" });
    const A = second.clientsFor(a!, "connect");
    await eventually(async () => (await A.users.batchGetUsers({ userIds: [e!] })).users.length === 0, "the start-up sweep finished the erasure", 20_000);
    for (const m of await listAllForward(A, group.id)) assertErased(m, e!, `seq ${m.seq}`);
  });
});
