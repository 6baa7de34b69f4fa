/**
 * The deployment's retention (MESSAGE_RETENTION_DAYS): every conversation keeps messages for at
 * most that long, whatever its own retention says; older ones are gone from history and search
 * before any sweep, younger ones stay.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { newUsers } from "../helpers/test-server.ts";
import { expectCode } from "../helpers/expect.ts";
import { createDirect, createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { expectHits, waitForHits } from "../search/helpers.ts";
import { DAY_MS, HOUR_MS, RetentionServer } from "./support.ts";

describe("deployment retention (MESSAGE_RETENTION_DAYS=1)", function () {
  this.timeout(60_000);
  let rs: RetentionServer;
  before(async () => {
    rs = await RetentionServer.start({ MESSAGE_RETENTION_DAYS: "1", RETENTION_SWEEP_INTERVAL_SECONDS: "3600" });
  });
  after(async () => {
    await rs?.stop();
  });

  it("hides messages older than a day in every conversation, even one whose own retention is longer", async () => {
    const [ada, bob, cy] = (await newUsers(rs.server, 3, "deploy")) as [string, string, string];
    let A = rs.clientsFor(ada);
    const word = `zq${randomUUID().slice(0, 8)}`;
    const group = await createGroup(A, [bob, cy]);
    await A.conversations.updateConversation({ conversationId: group.id, messageRetention: { seconds: 30n * 86_400n, nanos: 0 } });
    const direct = await createDirect(A, bob);
    const groupOld = await sendText(A, group.id, `${word} group, two days`);
    const groupYoung = await sendText(A, group.id, `${word} group, twenty hours`);
    const directOld = await sendText(A, direct.id, `${word} direct, two days`);
    const directNew = await sendText(A, direct.id, `${word} direct, now`);
    await waitForHits(A, { query: word }, [groupOld, groupYoung, directOld, directNew]);

    await rs.backdate(group.id, [groupOld.seq], 2 * DAY_MS);
    await rs.backdate(group.id, [groupYoung.seq], 20 * HOUR_MS);
    await rs.backdate(direct.id, [directOld.seq], 2 * DAY_MS);
    A = rs.clientsFor(ada);
    const B = rs.clientsFor(bob);

    assert.deepEqual((await listAllForward(B, group.id)).map((m) => m.seq), [groupYoung.seq], "the group keeps what is younger than a day");
    assert.deepEqual((await listAllForward(B, direct.id)).map((m) => m.seq), [directNew.seq]);
    await expectCode(B.messages.getMessage({ conversationId: group.id, seq: groupOld.seq }), Code.NotFound);
    await expectCode(B.messages.getMessage({ conversationId: direct.id, seq: directOld.seq }), Code.NotFound);
    await expectHits(B, { query: word }, [groupYoung, directNew], "search");
    const conversation = (await B.conversations.getConversation({ conversationId: direct.id })).conversation!;
    assert.equal(conversation.messageRetention, undefined, "the DIRECT conversation has none of its own");
    assert.equal(conversation.effectiveMessageRetention?.seconds, 86_400n, "the deployment's applies");
  });
});
