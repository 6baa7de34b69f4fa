/**
 * Positions of the partitioned event log, read straight from PostgreSQL: concurrent writers on
 * two nodes in many conversations get gapless positions per partition (1 … head), in commit
 * order, each event in the partition its conversation (or, without one, its user) hashes to; and
 * a node configured with another partition count refuses to start.
 * Needs DATABASE_URL and NATS (two nodes on one database); skipped otherwise.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { partitionOf } from "../../src/log/partitions.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { eventually } from "../helpers/feed.ts";
import { readEventLog, readEvents, readPartitionHeads, type EventRow } from "../helpers/event-log-db.ts";
import { failureSummary, key, sendLoop } from "../helpers/ledger.ts";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { newUsers, type TestServer } from "../helpers/test-server.ts";

const PARTITIONS = 4;

describe("event log positions (PostgreSQL, two nodes)", function () {
  this.timeout(30_000);
  let cluster: Cluster;
  let nodeA: TestServer;
  let nodeB: TestServer;
  before(async function () {
    if (!multiNodeAvailable()) this.skip();
    this.timeout(60_000);
    cluster = await startCluster(2, { EVENT_PARTITIONS: String(PARTITIONS) });
    [nodeA, nodeB] = cluster.nodes as [TestServer, TestServer];
  });
  after(async () => {
    await cluster?.stop();
  });

  it("hands concurrent writers in many conversations on two nodes gapless positions per partition, in commit order", async function () {
    this.timeout(40_000);
    const senders = await newUsers(nodeA, 6, "writer");
    const [reader, joiner] = await newUsers(nodeA, 2, "member");
    // Conversations until every partition has at least two (bounded: 60), made on both nodes.
    const convs: string[] = [];
    const perPartition = new Map<number, number>();
    for (let i = 0; i < 60 && (perPartition.size < PARTITIONS || [...perPartition.values()].some((n) => n < 2)); i++) {
      const on = i % 2 ? nodeB : nodeA;
      const g = await createGroup(on.clientsFor(senders[i % senders.length]!, i % 2 ? "connect" : "grpc"), [...senders, reader!].filter((u) => u !== senders[i % senders.length]), `c${i}`);
      convs.push(g.id);
      perPartition.set(partitionOf(g.id, PARTITIONS), (perPartition.get(partitionOf(g.id, PARTITIONS)) ?? 0) + 1);
    }
    assert.equal(perPartition.size, PARTITIONS, "precondition: conversations in every partition");

    // Six senders (three per node, both protocols, three sends in flight each) and, at the same
    // time, other writers: renames, read positions, a member joining and leaving.
    let stormDone = false;
    const storm = Promise.all(
      senders.map((id, i) =>
        sendLoop(() => (i % 2 ? nodeB : nodeA).clientsFor(id, i % 3 ? "connect" : "grpc"), id, {
          conversationIds: convs,
          count: 40,
          concurrency: 3,
        }),
      ),
    ).finally(() => (stormDone = true));
    const others = (async () => {
      let n = 0;
      for (let round = 0; round < 200 && !stormDone; round++) {
        const conv = convs[randomInt(convs.length)]!;
        const owner = nodeA.clientsFor(senders[0]!, "grpc");
        const onB = nodeB.clientsFor(reader!, "connect");
        await Promise.all([
          nodeA.clientsFor(senders[convs.indexOf(conv) % senders.length]!, "grpc").conversations.updateConversation({ conversationId: conv, name: `r${round}` }).catch(() => undefined),
          onB.conversations.markRead({ conversationId: conv, seq: 1n }).catch(() => undefined),
          round % 4 === 0
            ? owner.conversations.addMembers({ conversationId: convs[0]!, userIds: [joiner!] }).then(() =>
                owner.conversations.removeMember({ conversationId: convs[0]!, userId: joiner! }),
              ).catch(() => undefined)
            : undefined,
        ]);
        n++;
      }
      return n;
    })();
    const records = (await storm).flat();
    const otherRounds = await others;
    assert.equal(records.filter((r) => r.error).length, 0, `every send succeeded: ${failureSummary(records)}`);
    assert.ok(otherRounds > 0, "precondition: other writes ran alongside the sends");

    const url = cluster.databaseUrl;
    // Notifications (being added) are events addressed to a user alone; the notifier writes them
    // asynchronously, so wait for some before reading the log.
    await eventually(async () => (await readEvents(url)).some((e) => e.conversationId === null), "an event addressed to a user alone in the log");
    const [log, ...moreLogs] = await readEventLog(url);
    assert.equal(moreLogs.length, 0, "event_log has exactly one row");
    assert.equal(log!.partitions, PARTITIONS, "event_log.partitions is EVENT_PARTITIONS");
    assert.match(log!.logId, /^[0-9a-f]{16}$/, "event_log.log_id is 16 hex characters");

    // Heads first, then rows: a head is bumped in the transaction that inserts its rows, so every
    // position up to a head read earlier is in the later read (later rows are ignored).
    const heads = await readPartitionHeads(url);
    const rows = await readEvents(url);
    assert.deepEqual(heads.map((h) => h.partition), [0, 1, 2, 3], "event_log_partitions has one row per partition");

    const byPartition = new Map<number, EventRow[]>();
    for (const r of rows) byPartition.set(r.partition, [...(byPartition.get(r.partition) ?? []), r]);
    for (const h of heads) {
      const positions = (byPartition.get(h.partition) ?? []).map((r) => r.position);
      const upToHead = positions.filter((p) => p <= h.position);
      const expected = Array.from({ length: Number(h.position) }, (_, i) => BigInt(i + 1));
      assert.deepEqual(
        firstDifference(upToHead, expected),
        null,
        `partition ${h.partition}: positions 1…${h.position} each exactly once (${upToHead.length} rows up to the head)`,
      );
      assert.ok(h.relayedThrough <= h.position, `partition ${h.partition}: relayed_through ${h.relayedThrough} ≤ position ${h.position}`);
    }
    for (const p of [...byPartition.keys()]) assert.ok(p >= 0 && p < PARTITIONS, `partition ${p} is one of the ${PARTITIONS}`);

    const misplaced = rows
      .filter((r) => r.partition !== partitionOf(r.conversationId ?? r.targetUserId ?? "", PARTITIONS))
      .map((r) => `${r.event.kind.case} conv=${r.conversationId} user=${r.targetUserId} in ${r.partition}`);
    assert.deepEqual(misplaced.slice(0, 10), [], `every event sits in partitionOf(conversation id, or user id without one); ${misplaced.length} do not`);
    assert.ok(rows.some((r) => r.conversationId === null && r.targetUserId), "checked at least one event addressed to a user alone");

    // Commit order: within a conversation, message seqs (assigned in the sending transaction)
    // rise with the position.
    const seqsByConv = new Map<string, bigint[]>();
    const logged = new Map<string, number>();
    for (const r of rows) {
      if (r.event.kind.case !== "messageCreated" || !r.conversationId) continue;
      const seq = r.event.kind.value.message!.seq;
      seqsByConv.set(r.conversationId, [...(seqsByConv.get(r.conversationId) ?? []), seq]);
      logged.set(key(r.conversationId, seq), (logged.get(key(r.conversationId, seq)) ?? 0) + 1);
    }
    for (const [conv, seqs] of seqsByConv) {
      const bad = seqs.findIndex((s, i) => i > 0 && s <= seqs[i - 1]!);
      assert.equal(bad, -1, `conversation ${conv.slice(-6)}: seqs in position order ${seqs.join(",")}`);
    }
    const acked = records.map((r) => key(r.conversationId, r.message!.seq));
    assert.deepEqual(acked.filter((k) => logged.get(k) !== 1).slice(0, 10), [], "every acknowledged send is in the log exactly once");
    assert.deepEqual([...logged].filter(([, n]) => n !== 1).slice(0, 10), [], "no message is logged twice");
  });

  it("refuses to start a node whose EVENT_PARTITIONS differs from the database's, naming both numbers", async () => {
    for (const other of ["8", undefined]) {
      const shown = other ?? "16";
      await assert.rejects(
        cluster.addNode({ EVENT_PARTITIONS: other }),
        (err: Error) => {
          assert.match(err.message, new RegExp(`\\b${PARTITIONS}\\b`), `the error names the database's ${PARTITIONS}: ${err.message}`);
          assert.match(err.message, new RegExp(`\\b${shown}\\b`), `the error names the configured ${shown}: ${err.message}`);
          return true;
        },
        `a node with EVENT_PARTITIONS=${shown} on a ${PARTITIONS}-partition database does not start`,
      );
    }
    // The running nodes are unaffected.
    const [u] = await newUsers(nodeB, 1, "after-refusal");
    await nodeA.clientsFor(u!).users.getMe({});
  });
});

/** null when equal, else the first index where they differ with both values. */
function firstDifference(got: readonly bigint[], want: readonly bigint[]): string | null {
  const n = Math.max(got.length, want.length);
  for (let i = 0; i < n; i++) {
    if (got[i] !== want[i]) return `at index ${i}: got ${got[i] ?? "nothing"}, expected ${want[i] ?? "nothing"}`;
  }
  return null;
}
