/**
 * "The server never sees plaintext": SDK clients use encrypted DIRECT and GROUP conversations
 * with blind search — sends, edits, encrypted media, reactions and searches, with a random
 * marker word in the text and as the searched word — and then the marker is looked for in
 * every table of the server's database (search index tables included), every JetStream stream
 * of its prefix, every stored media file, every log line (trace level) and every request the
 * SDK sent. A control run does the same in a plain conversation and must find the marker,
 * so the scan is shown able to fail.
 *
 * Each run gets its own server, database (PostgreSQL database, or PGlite on disk read after the
 * server stopped), data directory and NATS prefix.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ConnectError } from "@connectrpc/connect";
import type { MediaKey } from "../../gen/parley/e2e/v1/payload_pb.ts";
import { eventually } from "../helpers/feed.ts";
import { deleteNatsState, natsPrefix, testNatsUrl } from "../helpers/realtime.ts";
import { createTestDatabase, newUsers, startTestServer, type FreshDatabase, type TestServer } from "../helpers/test-server.ts";
import {
  capturingLogger,
  describeFindings,
  dumpFiles,
  dumpJetStream,
  dumpPglite,
  dumpPostgres,
  findMarker,
  newMarker,
  wireRecorder,
  type Haystack,
} from "./plaintext-scan.ts";
import { allLive, decryptEventually, freshConversation, openDevice, sendAndStore, type E2eDevice } from "./support.ts";

/** Tables that are the search index (migrations 0005 and 0008). */
const SEARCH_TABLES = /"(message_search|message_blind_tokens|search_reindex)"/;

/** What one run left behind, by kind of place. */
interface Leftovers {
  tables: Haystack[];
  streams: Haystack[] | null;
  media: Haystack[];
  logs: Haystack[];
  wire: Haystack[];
}

/** One server run: a fresh database, data dir and prefix; `scan()` stops it and collects. */
class Run {
  readonly devices: E2eDevice[] = [];
  readonly log = capturingLogger();
  readonly wire = wireRecorder();
  server!: TestServer;
  #database: FreshDatabase | null = null;
  #dir = "";
  #prefix = natsPrefix();
  #nats = testNatsUrl();

  async start(): Promise<void> {
    this.#database = await createTestDatabase();
    this.#dir = await mkdtemp(path.join(tmpdir(), "parley-plaintext-"));
    this.server = await startTestServer(
      {
        DATA_DIR: this.#dir,
        PGLITE_PATH: this.#database ? undefined : path.join(this.#dir, "pglite"),
        NATS_URL: this.#nats,
        NATS_PREFIX: this.#prefix,
      },
      { databaseUrl: this.#database?.url, appOptions: { logger: this.log.logger } },
    );
  }

  async device(userId: string): Promise<E2eDevice> {
    const d = await openDevice(this.server, userId, { interceptors: [this.wire.interceptor] });
    this.devices.push(d);
    return d;
  }

  /** Stops the clients and the server, then reads everything the run left. */
  async scan(): Promise<Leftovers> {
    await Promise.all(this.devices.map((d) => d.close()));
    await this.server.stop();
    const tables = this.#database ? await dumpPostgres(this.#database.url) : await dumpPglite(path.join(this.#dir, "pglite"));
    const streams = this.#nats ? await dumpJetStream(this.#nats, this.#prefix) : null;
    const media = await dumpFiles(path.join(this.#dir, "media"), "media file");
    const logs = this.log.lines.map((line, i) => ({ place: `log line ${i + 1}`, text: line }));
    return { tables, streams, media, logs, wire: this.wire.requests };
  }

  async cleanUp(): Promise<void> {
    await Promise.all(this.devices.map((d) => d.close()));
    await this.server?.stop();
    await this.#database?.drop();
    await deleteNatsState(this.#prefix).catch(() => undefined);
    if (this.#dir) await rm(this.#dir, { recursive: true, force: true });
  }
}

function assertAbsent(marker: string, haystacks: readonly Haystack[], where: string): void {
  assert.ok(haystacks.length > 0, `${where}: there was something to scan`);
  const findings = findMarker(marker, haystacks);
  assert.deepEqual(findings.map((f) => `${f.place} (${f.form})`), [], `the marker is in ${where}:\n${describeFindings(findings)}`);
}

function assertPresent(marker: string, haystacks: readonly Haystack[], where: string): void {
  assert.ok(findMarker(marker, haystacks).length > 0, `the control marker ${marker} must be found in ${where}`);
}

describe("e2e client: the server never sees plaintext", function () {
  this.timeout(90_000);

  describe("control: a marker sent in a plain conversation", () => {
    const run = new Run();
    const marker = newMarker("Plain");
    let left: Leftovers;

    before(async () => {
      await run.start();
      const [a, b] = await newUsers(run.server, 2, "plainleak");
      const alice = await run.device(a!);
      const bob = await run.device(b!);
      await allLive([alice, bob]);
      const plain = await alice.client.createConversation({ memberIds: [b!], encrypted: false });
      const stored = await sendAndStore(alice, plain.id, `hello ${marker} in the clear`);
      await alice.client.messagesClient.addReaction({ conversationId: plain.id, seq: stored.seq, emoji: "👍" });
      await eventually(async () => (await bob.client.search(marker)).length === 1, "the plain search index has the marker");
      left = await run.scan();
    });
    after(() => run.cleanUp());

    it("is found in the database tables", () => assertPresent(marker, left.tables.filter((t) => !SEARCH_TABLES.test(t.place)), "the tables"));
    it("is found in the search index table", () => assertPresent(marker, left.tables.filter((t) => SEARCH_TABLES.test(t.place)), "message_search"));
    it("is found in the JetStream streams", function () {
      if (left.streams === null) this.skip(); // no NATS_URL: the in-process bus keeps nothing
      assertPresent(marker, left.streams!, "the streams");
    });
    it("is found on the wire", () => assertPresent(marker, left.wire, "the requests"));
  });

  describe("encrypted DIRECT and GROUP conversations with blind search", () => {
    const run = new Run();
    const marker = newMarker("Sealed");
    let left: Leftovers;
    let uploadError: unknown;
    let mediaRoundTrip = "";

    before(async () => {
      await run.start();
      const [a, b, c] = await newUsers(run.server, 3, "sealedleak");
      const alice = await run.device(a!);
      const bob = await run.device(b!);
      const carol = await run.device(c!);
      await allLive([alice, bob, carol]);

      const direct = await alice.client.createConversation({ memberIds: [b!], encrypted: true, blindSearch: true });
      const group = await alice.client.createConversation({ memberIds: [b!, c!], name: "sealed group", encrypted: true, blindSearch: true });
      const d1 = await sendAndStore(alice, direct.id, `hello ${marker} direct`);
      const d2 = await sendAndStore(bob, direct.id, `and ${marker.toUpperCase()} back`);
      const g1 = await sendAndStore(alice, group.id, `group ${marker} first`);
      const g2 = await sendAndStore(carol, group.id, `carol says ${marker.toLowerCase()}`);
      await alice.client.edit(group.id, g1.seq, `group ${marker} edited`);
      await bob.client.edit(direct.id, d2.seq, `edited ${marker} back`);
      for (const [conversationId, seq] of [[direct.id, d1.seq], [group.id, g1.seq], [group.id, g2.seq]] as const) {
        await bob.client.messagesClient.addReaction({ conversationId, seq, emoji: "🔥" });
      }

      // Encrypted media as the SDK sends it: sealed on the device, uploaded as an opaque
      // attachment of the conversation, its key inside the message.
      const file = Buffer.from(`\x89PNG pretend image holding ${marker} ${marker.toLowerCase()}`);
      let mediaKey: MediaKey | undefined;
      try {
        mediaKey = await alice.client.attachments.upload(group.id, file, { contentType: "image/png", fileName: `${marker}.png` });
      } catch (error) {
        uploadError = error;
      }
      const withMedia = await (await alice.client.send(group.id, { text: `photo of ${marker}`, media: mediaKey ? [mediaKey] : [] })).message;
      const opened = await decryptEventually(bob, await freshConversation(bob, group.id), withMedia);
      if (opened.media[0]?.mediaId) mediaRoundTrip = Buffer.from(await bob.client.attachments.download(opened.media[0])).toString("latin1");

      // Everyone reads everything, so the keys really were usable.
      for (const [reader, conversationId, message] of [[bob, direct.id, d1], [alice, direct.id, d2], [bob, group.id, g1], [carol, group.id, g1], [alice, group.id, g2]] as const) {
        const { message: current } = await reader.client.messagesClient.getMessage({ conversationId, seq: message.seq });
        const content = await decryptEventually(reader, await freshConversation(reader, conversationId), current!);
        assert.match(content.text.toLowerCase(), new RegExp(marker.toLowerCase()), `${reader.userId} reads message #${message.seq}`);
      }

      // Blind searches for the marker (the searched word), restricted to the encrypted
      // conversations and across all of the user's conversations.
      const found = await alice.client.search(marker, { conversationIds: [direct.id, group.id] });
      assert.ok(found.length >= 4, `the blind search finds the marker's messages (found ${found.length})`);
      assert.ok(found.every((r) => r.message.text.toLowerCase().includes(marker.toLowerCase())), "every hit holds the marker");
      await alice.client.search(marker);
      await bob.client.search(`${marker} edited`);
      left = await run.scan();
    });
    after(() => run.cleanUp());

    it("stores the encrypted media upload (application/octet-stream) and the other member opens it", () => {
      assert.ok(uploadError === undefined, `uploading the sealed file failed: ${uploadError instanceof ConnectError ? uploadError.rawMessage : String(uploadError)}`);
      assert.match(mediaRoundTrip, new RegExp(marker), "the downloaded ciphertext opens to the file");
    });
    it("leaves the marker in no PostgreSQL table", () => assertAbsent(marker, left.tables.filter((t) => !SEARCH_TABLES.test(t.place)), "the tables"));
    it("leaves the marker in no search index row", () => {
      const index = left.tables.filter((t) => SEARCH_TABLES.test(t.place));
      assert.ok(index.some((t) => t.place.includes("message_blind_tokens") && t.text.length > 0), "blind tokens were stored");
      assertAbsent(marker, index, "the search index tables");
    });
    it("leaves the marker in no JetStream stream", function () {
      if (left.streams === null) this.skip(); // no NATS_URL: the server ran on the in-process bus
      assertAbsent(marker, left.streams!, "the streams");
    });
    it("leaves the marker in no stored media file", function () {
      if (left.media.length === 0) assert.fail(`nothing was stored to scan: ${String(uploadError)}`);
      assertAbsent(marker, left.media, "the media files");
    });
    it("logs the marker on no line (trace level)", () => assertAbsent(marker, left.logs, "the server log"));
    it("sends the marker in no request the SDK makes", () => assertAbsent(marker, left.wire, "the requests"));
  });
});
