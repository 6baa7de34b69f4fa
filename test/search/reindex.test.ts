/**
 * `npm run reindex` (issue 7): an operator rebuilds the index from PostgreSQL with one
 * command. After the search table is wiped (a lost index), search finds nothing; after the
 * command, it finds every text message again, edited ones as they are now — and still no
 * encrypted or deleted one. PostgreSQL mode
 * only: the command needs a database it can share with the running server.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Message } from "../../gen/parley/v1/message_pb.ts";
import { newUsers, type TestServer } from "../helpers/test-server.ts";
import { createGroup, sendText } from "../helpers/fixtures.ts";
import { startRealtimeServer } from "../helpers/realtime.ts";
import { expectHits, expectNoHits, lifecycleOf, transparentEnvelope, uniqueWord, waitForHits } from "./helpers.ts";
import { searchRowsHolding, wipeSearchTable } from "./search-table.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `npm run reindex` (the script itself, with the repository's Node) against the server's database. */
async function runReindex(server: TestServer, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(path.join(repoRoot, "node_modules/.bin/node"), ["src/cli/reindex.ts", ...args], {
    cwd: repoRoot,
    timeout: 60_000,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      DATABASE_URL: server.env.DATABASE_URL,
      JWT_SECRET: server.secret,
      LOG_LEVEL: "silent",
    },
  });
}

describe("npm run reindex", () => {
  let server: TestServer;
  before(async function () {
    if (!process.env.DATABASE_URL) this.skip(); // the embedded database lives inside the server process
    // A server of its own: wiping its index disturbs no other test.
    server = await startRealtimeServer();
  });
  after(async () => {
    await server?.stop();
  });

  it("rebuilds a wiped index: every text message found again as it is now, no encrypted or deleted one", async function () {
    this.timeout(90_000);
    const [a, b, c] = await newUsers(server, 3, "reindex");
    const A = server.clientsFor(a!, "grpc");
    const B = server.clientsFor(b!, "connect");
    const groups = [await createGroup(A, [b!, c!], "one"), await createGroup(B, [a!, c!], "two")];
    const word = uniqueWord("rx");
    const secretWord = uniqueWord("rs");
    const texts: Message[] = [];
    for (const [i, group] of groups.entries()) {
      texts.push(...(await Promise.all(Array.from({ length: 12 }, (_, n) => sendText(i ? B : A, group.id, `${word} number ${n} in ${group.name}`)))));
      await A.messages.sendMessage({
        conversationId: group.id,
        clientMessageId: randomUUID(),
        content: { case: "envelope", value: transparentEnvelope(`${word} ${secretWord}`) },
      });
    }
    // An edited message must come back as its current version, a deleted one not at all.
    const [oldWord, newWord, goneWord] = [uniqueWord("ro"), uniqueWord("rn"), uniqueWord("rg")];
    const lifecycle = lifecycleOf(A);
    const edited = await sendText(A, groups[0]!.id, `${word} ${oldWord}`);
    await lifecycle.editText(groups[0]!.id, edited.seq, `${word} ${newWord}`);
    const deleted = await sendText(A, groups[0]!.id, `${word} ${goneWord}`);
    await lifecycle.delete(groups[0]!.id, deleted.seq);
    texts.push(edited);
    await waitForHits(A, { query: word }, texts, { what: "everything indexed" });

    await wipeSearchTable(server);
    await expectNoHits(A, { query: word }, "precondition: a wiped index finds nothing");

    const { stdout } = await runReindex(server);
    assert.match(stdout, /done/, `the command reports that it finished: ${stdout}`);
    await expectHits(A, { query: word }, texts, "right after the rebuild");
    await expectHits(B, { query: `${word} two` }, texts.slice(12, 24), "the second group, for another member");
    await expectNoHits(A, { query: secretWord }, "an encrypted message's word");
    assert.equal(await searchRowsHolding(server, secretWord), 0, "no encrypted content in the search table");
    await expectHits(A, { query: newWord }, [edited], "the edited message by its new text");
    for (const gone of [oldWord, goneWord]) {
      await expectNoHits(A, { query: gone }, `replaced or deleted text (${gone})`);
      assert.equal(await searchRowsHolding(server, gone), 0, `the rebuild put replaced or deleted text (${gone}) into the search table`);
    }

    // Live indexing goes on after a rebuild, and a second run changes nothing.
    const later = await sendText(A, groups[0]!.id, `${word} after the rebuild`);
    await waitForHits(A, { query: `${word} after` }, [later]);
    await runReindex(server);
    await expectHits(A, { query: word }, [...texts, later], "after a second rebuild");
  });
});
