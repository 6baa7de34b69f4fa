/**
 * The offline outbox with encryption across a real server restart on the same database: 100
 * encrypted sends queued while the server is down are stored once each, in order, and the other
 * member opens every one. Both devices keep their keys and outbox in a FileStore, as the CLI does.
 */
import assert from "node:assert/strict";
import * as path from "node:path";
import { FileStore } from "../../src/client/node/file-store.ts";
import { openRestartableServers, type RestartableServers } from "../helpers/restartable-server.ts";
import { newUsers } from "../helpers/test-server.ts";
import { allLive, decryptEventually, freshConversation, openDevice, rawMessages, type E2eDevice } from "./support.ts";

const SENDS = 100;

describe("e2e client: encrypted sends queued offline across a server restart", function () {
  this.timeout(120_000);
  let servers: RestartableServers;
  const devices: E2eDevice[] = [];

  before(async () => {
    servers = await openRestartableServers("parley-e2e-outbox-");
  });
  after(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await servers?.close();
  });

  for (const kind of ["DIRECT", "GROUP"] as const) {
    it(`stores ${SENDS} ${kind} encrypted sends queued while the server was down once each, in order, and the peer opens them`, async () => {
      const first = await servers.start();
      const [a, b, c] = await newUsers(first, 3, `offline${kind}`);
      const alice = await openDevice(first, a!, { store: new FileStore(path.join(servers.dir, `alice-${kind}`)) });
      const bob = await openDevice(first, b!, { store: new FileStore(path.join(servers.dir, `bob-${kind}`)) });
      const carol = await openDevice(first, c!);
      devices.push(alice, bob, carol);
      await allLive([alice, bob, carol]);
      const conv =
        kind === "DIRECT"
          ? await alice.client.createConversation({ memberIds: [b!], encrypted: true })
          : await alice.client.createConversation({ memberIds: [b!, c!], name: "offline group", encrypted: true });
      await (await alice.client.send(conv.id, { text: "online first" })).message;

      await first.stop();
      await alice.waitUntil(() => !alice.client.live, "alice noticed the server is gone");
      const pending = [];
      for (let i = 1; i <= SENDS; i++) pending.push(await alice.client.send(conv.id, { text: `sealed ${i}` }));
      assert.equal((await alice.client.outbox()).length, SENDS, "every send is in the durable outbox while the server is down");
      await new Promise((r) => setTimeout(r, 500));

      await servers.restart(first);
      const stored = await Promise.all(pending.map((p) => p.message));
      assert.equal((await alice.client.outbox()).length, 0, "the outbox is empty once all are stored");

      const history = (await rawMessages(bob, conv.id)).slice(1);
      assert.deepEqual(history.map((m) => m.id), stored.map((m) => m.id), "each send stored once, in the order queued");
      assert.ok(history.every((m) => m.content.case === "envelope"), "every stored message is an envelope");
      const conversation = await freshConversation(bob, conv.id);
      const texts = [];
      for (const m of history) texts.push((await decryptEventually(bob, conversation, m)).text);
      assert.deepEqual(texts, Array.from({ length: SENDS }, (_, i) => `sealed ${i + 1}`), "bob opens every one");
    });
  }
});
