/**
 * The key directory under concurrency and at its edges: the device limit and a signing key's
 * uniqueness hold when registrations race, only users who could send to a device can claim
 * its prekeys, and values the database cannot hold are refused as bad input, not as errors.
 */
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { createEncrypted, e2eClientsFor, newDeviceKeys, registerDevice, registration, unclaimedPrekeys } from "../helpers/e2e.ts";
import { expectInvalidArgument } from "../helpers/expect.ts";
import { encodePageToken } from "../../src/page-token.ts";
import { newUsers, startTestServer, type TestServer } from "../helpers/test-server.ts";

describe("KeyService under races and at its limits", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  it("registers at most 20 devices of a user when 25 registrations race", async () => {
    const [ada] = await newUsers(server, 1, "racelimit");
    const A = e2eClientsFor(server, ada!);
    const outcomes = await Promise.allSettled(Array.from({ length: 25 }, (_, i) => A.keys.registerDevice(registration(newDeviceKeys(), `racer ${i}`))));
    const registered = outcomes.filter((o) => o.status === "fulfilled");
    const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [ConnectError.from(o.reason).code] : []));
    assert.equal(registered.length, 20, "twenty devices registered");
    assert.deepEqual(refused, Array(5).fill(Code.ResourceExhausted), "the rest refused as over the limit");
    assert.equal((await A.keys.listDevices({ userIds: [ada!] })).devices.length, 20);
  });

  it("answers racing registrations of one signing key with one device", async () => {
    const [ada] = await newUsers(server, 1, "racekey");
    const A = e2eClientsFor(server, ada!, "grpc");
    const keys = newDeviceKeys();
    const results = await Promise.all(Array.from({ length: 6 }, () => A.keys.registerDevice(registration(keys))));
    assert.equal(new Set(results.map((r) => r.device!.deviceId)).size, 1, "one device id for every answer");
    assert.equal(results.filter((r) => r.created).length, 1, "created once");
  });

  it("hands a device's prekeys only to users who share a conversation with its owner", async () => {
    const [ada, bob, cy, eve] = (await newUsers(server, 4, "claimers")) as [string, string, string, string];
    const A = e2eClientsFor(server, ada);
    const device = await registerDevice(A, 3);
    const stranger = await e2eClientsFor(server, eve).keys.claimPrekeys({ deviceIds: [device.id] });
    assert.equal(stranger.claimed[0]?.prekey, undefined, "a stranger gets no prekey");
    assert.equal(await unclaimedPrekeys(A, ada, device.id), 3, "and none was used up");
    await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
    const member = await e2eClientsFor(server, bob).keys.claimPrekeys({ deviceIds: [device.id] });
    assert.ok(member.claimed[0]?.prekey, "a member of a shared conversation gets one");
    assert.equal(await unclaimedPrekeys(A, ada, device.id), 2);
  });

  it("refuses a blind query's key epoch and page tokens the database cannot hold as INVALID_ARGUMENT", async () => {
    const [ada, bob, cy] = (await newUsers(server, 3, "edges")) as [string, string, string];
    const A = e2eClientsFor(server, ada);
    const group = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
    const token = new Uint8Array(16).fill(1);
    await expectInvalidArgument(A.search.searchMessages({ blindQueries: [{ conversationId: group.id, keyEpoch: 2 ** 31, tokens: [token] }] }), "blind_queries[0].key_epoch");
    const device = await registerDevice(A);
    const forged = encodePageToken("inbox", { d: device.id, n: "99999999999999999999" });
    await expectInvalidArgument(A.keys.listToDeviceMessages({ deviceId: device.id, pageToken: forged }), "page_token");
  });
});
