/**
 * The offline outbox across a real server restart on the same database: sends queued while the
 * server is down are stored once each, in order, after it comes back. The client keeps its
 * outbox in a FileStore, as the CLI does.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { FileStore } from "../../src/client/node/file-store.ts";
import { createDirect, listAllForward } from "../helpers/fixtures.ts";
import { openRestartableServers, type RestartableServers } from "../helpers/restartable-server.ts";
import { newUsers } from "../helpers/test-server.ts";
import { sdkClient, type SdkClient } from "./support.ts";

const SENDS = 100;

describe("client SDK outbox across a server restart", function () {
  this.timeout(60_000);
  let servers: RestartableServers;
  const clients: SdkClient[] = [];

  before(async () => {
    servers = await openRestartableServers("parley-sdk-");
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await servers?.close();
  });

  it(`delivers ${SENDS} sends queued while the server was down once each, in order, after it restarts`, async () => {
    const first = await servers.start();
    const [a, b] = await newUsers(first, 2, "outbox");
    const conv = await createDirect(first.clientsFor(a!), b!);

    const alice = sdkClient(first, a!, { store: new FileStore(path.join(servers.dir, "alice")) });
    clients.push(alice);
    await alice.waitUntil(() => alice.client.live, "alice live");

    await first.stop();
    await alice.waitUntil(() => !alice.client.live, "alice noticed the server is gone");

    const pending = [];
    for (let i = 1; i <= SENDS; i++) pending.push(await alice.client.send(conv.id, { text: `queued ${i}` }));
    assert.equal((await alice.client.outbox()).length, SENDS, "every send is in the durable outbox while the server is down");
    await new Promise((r) => setTimeout(r, 500)); // let the sender fail a few attempts

    const second = await servers.restart(first);
    const stored = await Promise.all(pending.map((p) => p.message));
    assert.deepEqual((await alice.client.outbox()).length, 0, "the outbox is empty once all are stored");

    const history = await listAllForward(second.clientsFor(b!), conv.id);
    assert.deepEqual(
      history.map((m) => m.content.value),
      Array.from({ length: SENDS }, (_, i) => `queued ${i + 1}`),
      "each send stored once, in the order it was queued",
    );
    assert.deepEqual(history.map((m) => m.id), stored.map((m) => m.id), "each pending send resolved with its stored message");
    assert.equal(new Set(history.map((m) => m.clientMessageId)).size, SENDS, "one client_message_id each");
  });
});
