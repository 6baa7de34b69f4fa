/**
 * The retention sweeper (every second here): what passed retention is deleted for good — the
 * message rows with their earlier versions, reactions and counts, blind-index tokens, the
 * search index entries (tombstones without text or sender), the content of the events that
 * carried them (the rows stay, bare, so positions stay gapless), encrypted attachments with
 * their files — and the unread counters no longer count them. Messages still within retention,
 * and old ones of a conversation without retention, are untouched. With two nodes sweeping the
 * same database, everything is deleted exactly once.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { createTestDatabase, newUsers, startTestServer, type Clients } from "../helpers/test-server.ts";
import { createGroup, listAllConversations, listAllForward, sendText } from "../helpers/fixtures.ts";
import { blindToken, createEncrypted, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";
import { waitForHits } from "../search/helpers.ts";
import { withDatabase } from "../helpers/event-log-db.ts";
import { eventually, HOUR_MS, RetentionServer, type Query } from "./support.ts";

const HOUR = { seconds: 3600n, nanos: 0 };
const SWEEP_EVERY_SECOND = { RETENTION_SWEEP_INTERVAL_SECONDS: "1" };

async function unreadOf(c: Clients, conversationId: string): Promise<{ unread: bigint; mentions: bigint }> {
  const conversation = (await listAllConversations(c)).find((x) => x.id === conversationId);
  assert.ok(conversation, "the conversation is listed");
  return { unread: conversation.unreadCount, mentions: conversation.unreadMentionCount };
}

async function count(q: Query, text: string, params: unknown[]): Promise<number> {
  const [row] = await q<{ n: number | string }>(`select count(*)::int as n from (${text}) x`, params);
  return Number(row!.n);
}

describe("retention sweeper", function () {
  this.timeout(120_000);

  it("deletes messages past retention with everything derived from them, their attachments' files and index entries, and fixes the unread counters", async () => {
    const rs = await RetentionServer.start(SWEEP_EVERY_SECOND);
    try {
      const [ada, bob, cy] = (await newUsers(rs.server, 3, "sweep")) as [string, string, string];
      let A = rs.clientsFor(ada, "grpc");
      let B = rs.clientsFor(bob, "connect");
      const C = rs.clientsFor(cy, "grpc");
      const oldText = `zqold${randomUUID().slice(0, 8)}`;
      const newWord = `zqnew${randomUUID().slice(0, 8)}`;

      const group = await createGroup(A, [bob, cy]);
      await A.conversations.updateConversation({ conversationId: group.id, messageRetention: HOUR });
      const old = (await A.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), content: { case: "text", value: `${oldText} draft` }, mentionUserIds: [bob] })).message!;
      await A.messages.editMessage({ conversationId: group.id, seq: old.seq, content: { case: "text", value: `${oldText} final` } });
      await C.messages.addReaction({ conversationId: group.id, seq: old.seq, emoji: "👍" });
      const deleted = await sendText(C, group.id, `${oldText} regretted`);
      await A.messages.deleteMessage({ conversationId: group.id, seq: deleted.seq }); // a moderation: logged
      const reply = (await C.messages.sendMessage({ conversationId: group.id, clientMessageId: randomUUID(), replyToSeq: old.seq, content: { case: "text", value: `${newWord} reply` } })).message!;
      const fresh = await sendText(C, group.id, `${newWord} fresh`);
      await C.messages.addReaction({ conversationId: group.id, seq: fresh.seq, emoji: "🎉" });

      const keeper = await createGroup(A, [bob, cy], "keeps everything");
      const kept = await sendText(A, keeper.id, `${oldText} kept`);

      const sealed = await createEncrypted(A, ConversationType.GROUP, [bob, cy], { blindSearch: true });
      await A.conversations.updateConversation({ conversationId: sealed.id, messageRetention: HOUR });
      const sealedOld = await sendEnvelope(A, sealed.id, sealedEnvelope(1), { searchTokens: [blindToken(), blindToken()] });
      const sealedNew = await sendEnvelope(A, sealed.id, sealedEnvelope(1), { searchTokens: [blindToken()] });
      const oldFile = (await A.media.uploadMedia({ data: new Uint8Array(100).fill(7), conversationId: sealed.id })).media!;
      const newFile = (await A.media.uploadMedia({ data: new Uint8Array(100).fill(8), conversationId: sealed.id })).media!;
      assert.ok(rs.mediaFileExists(oldFile.id), "precondition: the attachment's file is stored");

      await waitForHits(B, { query: oldText }, [old, kept]);
      await waitForHits(B, { query: newWord }, [reply, fresh]);
      // Bob has read nothing: the old message (mentioning him) and the two of Cy's count.
      assert.deepEqual(await unreadOf(B, group.id), { unread: 3n, mentions: 1n }, "precondition: Bob's counters");

      await rs.backdate(group.id, [old.seq, deleted.seq], 2 * HOUR_MS);
      await rs.backdate(keeper.id, [kept.seq], 2 * HOUR_MS);
      await rs.backdate(sealed.id, [sealedOld.seq], 2 * HOUR_MS);
      await rs.backdateMedia([oldFile.id], 2 * HOUR_MS);
      A = rs.clientsFor(ada, "grpc");
      B = rs.clientsFor(bob, "connect");

      await eventually(
        async () => !rs.mediaFileExists(oldFile.id) && (await unreadOf(B, group.id)).unread === 2n,
        "swept (the old attachment's file is gone and Bob's unread count no longer has the old message)",
      );
      assert.deepEqual(await unreadOf(B, group.id), { unread: 2n, mentions: 0n }, "the counters lost exactly the old message, its mention with it");
      assert.ok(rs.mediaFileExists(newFile.id), "the newer attachment's file stays");
      assert.deepEqual((await listAllForward(B, group.id)).map((m) => m.seq), [reply.seq, fresh.seq]);
      assert.deepEqual((await listAllForward(B, keeper.id)).map((m) => m.seq), [kept.seq], "the conversation without retention keeps its old message");

      const state = await rs.edit(async (q) => {
        const at = (c: string, seqs: bigint[]) => [c, seqs.map(String)];
        const gone = [old.seq, deleted.seq];
        return {
          messages: await count(q, "select 1 from messages where conversation_id = $1 and seq = any($2::int8[])", at(group.id, gone)),
          edits: await count(q, "select 1 from message_edits where conversation_id = $1 and seq = any($2::int8[])", at(group.id, gone)),
          reactions: await count(q, "select 1 from message_reactions where conversation_id = $1 and seq = any($2::int8[])", at(group.id, gone)),
          reactionCounts: await count(q, "select 1 from message_reaction_counts where conversation_id = $1 and seq = any($2::int8[])", at(group.id, gone)),
          moderation: await count(q, "select 1 from moderation_log where conversation_id = $1 and message_seq = any($2::int8[])", at(group.id, gone)),
          sealedMessages: await count(q, "select 1 from messages where conversation_id = $1 and seq = $2", [sealed.id, String(sealedOld.seq)]),
          oldTokens: await count(q, "select 1 from message_blind_tokens where conversation_id = $1 and seq = $2", [sealed.id, String(sealedOld.seq)]),
          newTokens: await count(q, "select 1 from message_blind_tokens where conversation_id = $1 and seq = $2", [sealed.id, String(sealedNew.seq)]),
          media: await count(q, "select 1 from media where id = any($1::uuid[])", [[oldFile.id, newFile.id]]),
          searchText: await count(q, "select 1 from message_search t where conversation_id = $2 and position($1 in t::text) > 0", [oldText, group.id]),
          tombstone: (await q<{ deleted: boolean; tsv: string | null; sender_id: string }>(
            "select deleted, tsv::text as tsv, sender_id from message_search where conversation_id = $1 and seq = $2", [group.id, String(old.seq)]))[0],
          eventsWithOldText: await count(q, "select 1 from events where conversation_id = $2 and position($1::bytea in payload) > 0", [Buffer.from(oldText), group.id]),
          eventRowsOfOld: await count(q, "select 1 from events where conversation_id = $1 and message_seq = $2", at(group.id, [old.seq]).flat()),
          keptMessages: await count(q, "select 1 from messages where conversation_id = $1", [keeper.id]),
          liveMessages: await count(q, "select 1 from messages where conversation_id = $1", [group.id]),
          liveReactions: await count(q, "select 1 from message_reactions where conversation_id = $1 and seq = $2", [group.id, String(fresh.seq)]),
        };
      });
      assert.deepEqual(
        { ...state, tombstone: undefined },
        {
          messages: 0, edits: 0, reactions: 0, reactionCounts: 0, moderation: 0, sealedMessages: 0, oldTokens: 0, newTokens: 1, media: 1,
          searchText: 0, tombstone: undefined, eventsWithOldText: 0,
          eventRowsOfOld: 3, // created, edited, reaction_added: kept as bare rows, so positions stay gapless
          keptMessages: 1, liveMessages: 2, liveReactions: 1,
        },
      );
      assert.deepEqual(state.tombstone, { deleted: true, tsv: null, sender_id: "" }, "the search entry is a tombstone with nothing of the message");
      B = rs.clientsFor(bob, "connect");
      assert.equal((await B.messages.getMessage({ conversationId: group.id, seq: reply.seq })).message?.replyTo, undefined);
    } finally {
      await rs.stop();
    }
  });

  it("sweeps by the deployment's retention (MESSAGE_RETENTION_DAYS) by age, attachments included", async () => {
    const rs = await RetentionServer.start({ ...SWEEP_EVERY_SECOND, MESSAGE_RETENTION_DAYS: "1" });
    try {
      const [ada, bob, cy] = (await newUsers(rs.server, 3, "deploy")) as [string, string, string];
      const A = rs.clientsFor(ada);
      const group = await createGroup(A, [bob, cy]);
      const messages = [];
      for (let i = 0; i < 5; i++) messages.push(await sendText(A, group.id, `message ${i}`));
      const sealed = await createEncrypted(A, ConversationType.GROUP, [bob, cy]);
      const oldFile = (await A.media.uploadMedia({ data: new Uint8Array(10).fill(1), conversationId: sealed.id })).media!;
      const youngFile = (await A.media.uploadMedia({ data: new Uint8Array(10).fill(2), conversationId: sealed.id })).media!;
      await rs.backdate(group.id, messages.slice(0, 3).map((m) => m.seq), 2 * 24 * HOUR_MS);
      await rs.backdate(group.id, [messages[3]!.seq], 12 * HOUR_MS);
      await rs.backdateMedia([oldFile.id], 2 * 24 * HOUR_MS);
      await rs.backdateMedia([youngFile.id], 12 * HOUR_MS);
      await eventually(() => !rs.mediaFileExists(oldFile.id), "the old attachment's file deleted");
      const left = await rs.edit((q) => q<{ seq: string }>("select seq::text as seq from messages where conversation_id = $1 order by seq", [group.id]));
      assert.deepEqual(left.map((r) => BigInt(r.seq)), [messages[3]!.seq, messages[4]!.seq], "older than a day: deleted; younger: kept");
      assert.ok(rs.mediaFileExists(youngFile.id), "the younger attachment stays");
      assert.equal((await rs.clientsFor(bob).media.downloadMedia({ mediaId: youngFile.id })).data.length, 10);
    } finally {
      await rs.stop();
    }
  });

  it("deletes everything exactly once when two nodes sweep the same database, in batches", async function () {
    const database = await createTestDatabase();
    if (!database) this.skip(); // nodes share a database only on PostgreSQL
    const nodes = [
      await startTestServer(SWEEP_EVERY_SECOND, { databaseUrl: database!.url }),
      await startTestServer(SWEEP_EVERY_SECOND, { databaseUrl: database!.url }),
    ];
    try {
      const [ada, bob, cy] = (await newUsers(nodes[0]!, 3, "twice")) as [string, string, string];
      const A = nodes[0]!.clientsFor(ada);
      const group = await createGroup(A, [bob, cy]);
      const total = 1_150; // more than two batches of 500
      const sent: bigint[] = [];
      for (let i = 0; i < total; i += 50) {
        const chunk = await Promise.all(Array.from({ length: Math.min(50, total - i) }, (_, j) => sendText(nodes[(i / 50) % 2]!.clientsFor(cy), group.id, `m${i + j}`)));
        sent.push(...chunk.map((m) => m.seq));
      }
      const keep = 7;
      const old = sent.sort((a, b) => (a < b ? -1 : 1)).slice(0, total - keep);
      await withDatabase(database!.url, (c) =>
        c.query("update messages set created_at = created_at - interval '2 hours' where conversation_id = $1 and seq = any($2::int8[])", [group.id, old.map(String)]),
      );
      // Both nodes sweep every second; the retention turns them loose at once.
      await A.conversations.updateConversation({ conversationId: group.id, messageRetention: HOUR });
      await eventually(async () => (await unreadOf(nodes[1]!.clientsFor(bob), group.id)).unread === BigInt(keep), `Bob's unread count down to ${keep}`, 30_000);
      const left = await withDatabase(database!.url, async (c) => (await c.query("select count(*)::int as n from messages where conversation_id = $1", [group.id])).rows[0].n);
      assert.equal(left, keep, "only the messages within retention are left");
      await new Promise((resolve) => setTimeout(resolve, 2_000)); // more sweeps by both nodes change nothing
      assert.deepEqual(await unreadOf(nodes[0]!.clientsFor(bob), group.id), { unread: BigInt(keep), mentions: 0n }, "each message was taken out of the counters once");
    } finally {
      for (const node of nodes) await node.stop();
      await database!.drop();
    }
  });
});
