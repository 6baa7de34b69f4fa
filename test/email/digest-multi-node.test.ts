/**
 * Two nodes sharing one PostgreSQL both run the digest sender: every user still gets exactly
 * one digest (claims are disjoint), and a node started afterwards sends none again (coverage is
 * recorded). Needs PostgreSQL and NATS (skipped otherwise, as every multi-node test).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { multiNodeAvailable, startCluster, type Cluster } from "../helpers/realtime.ts";
import { startSmtpServer, type SmtpTestServer } from "../helpers/smtp.ts";
import { createGroup } from "../helpers/fixtures.ts";
import { digestEnv, HOURLY_SECONDS, mailsTo, peopleWithDigests } from "./support.ts";

describe("email digests on two nodes", function () {
  this.timeout(90_000);
  let smtp: SmtpTestServer;
  let cluster: Cluster | undefined;
  before(async function () {
    if (!multiNodeAvailable()) return this.skip();
    smtp = await startSmtpServer();
    cluster = await startCluster(2, digestEnv(smtp));
  });
  after(async () => {
    await cluster?.stop();
    await smtp?.close();
  });

  it("sends each user one digest, and a restarted node sends none again", async () => {
    const [first, second] = cluster!.nodes as [NonNullable<Cluster>["nodes"][0], NonNullable<Cluster>["nodes"][0]];
    const [ada, ...others] = await peopleWithDigests(first, 25);
    // Enough users that both nodes' claims overlap in time; sent through both nodes.
    const group = await createGroup(ada!.clients, others.map((p) => p.id));
    const text = `everyone look ${randomUUID()}`;
    await second.clientsFor(ada!.id, "grpc").messages.sendMessage({
      conversationId: group.id,
      clientMessageId: randomUUID(),
      content: { case: "text", value: text },
      mentionUserIds: others.map((p) => p.id),
    });
    for (const person of others) await smtp.waitForMail((m) => m.to.includes(person.address), 20_000);
    await cluster!.nodes[0]!.stop();
    await cluster!.addNode();
    // Past the HOURLY period, with the new node sweeping every second.
    await delay((HOURLY_SECONDS + 3) * 1000);
    for (const person of others) {
      const mails = mailsTo(smtp, person.address);
      assert.equal(mails.length, 1, `${person.id} got ${mails.length} digests`);
      assert.ok(mails[0]!.text.includes(text));
    }
    assert.equal(smtp.mails().length, others.length, "nothing else was sent");
  });
});
