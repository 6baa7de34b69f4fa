/**
 * Exports as jobs: a conversation's history for its admins and a user's own data, as
 * JSON Lines or a ZIP with media; WatchJob frames; the download; progress on Subscribe.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ConversationType } from "../../gen/parley/v1/conversation_pb.ts";
import { ExportFormat, JobKind, JobStatus } from "../../gen/parley/v1/job_pb.ts";
import { EmailDigestFrequency } from "../../gen/parley/v1/notification_pb.ts";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { createEncrypted, sealedEnvelope, sendEnvelope } from "../helpers/e2e.ts";
import { openLiveFeed } from "../helpers/feed.ts";
import { createGroup, listAllForward, sendText } from "../helpers/fixtures.ts";
import { newUsers, type Clients } from "../helpers/test-server.ts";
import { postStory, startStoryServer, type StoryServer } from "../stories/support.ts";
import { assertWellFormedFrames, download, parseJsonl, sha256, unzip, watchToEnd, type JsonRecord } from "./helpers.ts";

describe("exports as jobs", function () {
  this.timeout(60_000);
  let server: StoryServer;
  before(async function () {
    // Small chunks, so even these histories take several chunks.
    server = await startStoryServer({ JOB_CHUNK_MESSAGES: "7", LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent" });
  });
  after(async () => {
    await server?.stop();
  });

  async function exportAndDownload(clients: Clients, target: { conversationId: string } | { myData: true }, format: ExportFormat = ExportFormat.JSONL) {
    const started = await clients.jobs.startExport({
      target: "conversationId" in target ? { case: "conversationId", value: target.conversationId } : { case: "myData", value: true },
      format,
    });
    const job = started.job!;
    assert.equal(job.status, JobStatus.QUEUED, "a new job is queued");
    const frames = await watchToEnd(clients, job.id);
    assertWellFormedFrames(frames);
    const last = frames.at(-1)!;
    assert.equal(last.status, JobStatus.SUCCEEDED, `the job succeeded: ${last.error}`);
    assert.equal(last.progress!.percent, 100);
    assert.equal(last.progress!.itemsDone, last.progress!.itemsTotal);
    const output = last.output!;
    const { data, total } = await download(clients, job.id);
    assert.equal(BigInt(data.length), output.sizeBytes, "the download is the whole file");
    assert.equal(total, output.sizeBytes);
    assert.equal(sha256(data), output.sha256, "the sha256 matches");
    return { job: last, frames, data };
  }

  for (const protocol of ["grpc", "connect"] as const) {
    it(`exports a conversation as JSON Lines: header, members, then every message as the API shows it, in seq order (${protocol})`, async () => {
      const [a, b, c] = await newUsers(server, 3, "exp");
      const A = server.clientsFor(a!, protocol);
      const B = server.clientsFor(b!, protocol);
      const group = await createGroup(A, [b!, c!], "export me");
      for (let i = 0; i < 20; i++) await sendText(i % 4 === 0 ? B : A, group.id, `line ${i} "quoted" \n newline ✓`);
      const edited = await sendText(A, group.id, "before edit");
      await A.messages.editMessage({ conversationId: group.id, seq: edited.seq, content: { case: "text", value: "after edit" } });
      const deleted = await sendText(B, group.id, "to be deleted");
      await B.messages.deleteMessage({ conversationId: group.id, seq: deleted.seq });
      await A.messages.addReaction({ conversationId: group.id, seq: 2n, emoji: "👍" });
      await B.messages.addReaction({ conversationId: group.id, seq: 2n, emoji: "👍" });
      await B.messages.addReaction({ conversationId: group.id, seq: 2n, emoji: "🎉" });

      const { job, data } = await exportAndDownload(A, { conversationId: group.id });
      assert.equal(job.kind, JobKind.CONVERSATION_EXPORT);
      assert.equal(job.conversationId, group.id);
      assert.equal(job.output!.fileName, `conversation-${group.id}.jsonl`);
      assert.equal(job.output!.contentType, "application/x-ndjson");
      const records = parseJsonl(data);
      const [header, ...rest] = records;
      assert.equal(header!.type, "conversation");
      assert.equal(header!.id, group.id);
      assert.equal(header!.name, "export me");
      assert.equal(header!.kind, "group");
      assert.ok(typeof header!.exported_at === "string" && typeof header!.created_at === "string");
      const members = rest.filter((r) => r.type === "member");
      assert.deepEqual(members.map((m) => m.user_id).sort(), [a, b, c].sort());
      assert.equal(members.find((m) => m.user_id === a)!.role, "admin");
      assert.deepEqual(rest.slice(0, members.length), members, "members come right after the header");
      const messages = rest.slice(members.length);
      const listed = await listAllForward(A, group.id);
      assert.equal(messages.length, listed.length, "every message once");
      for (const [i, m] of listed.entries()) {
        const r = messages[i]!;
        assert.equal(r.type, "message");
        assert.equal(r.seq, Number(m.seq), "seq order");
        assert.equal(r.id, m.id);
        assert.equal(r.sender_id, m.senderId);
        assert.equal(r.deleted, m.deletion !== undefined);
        assert.equal(r.text, m.content.case === "text" ? m.content.value : undefined);
        assert.equal(r.edited_at !== null, m.editedAt !== undefined);
        const reactions = Object.fromEntries(m.reactions.map((x) => [x.emoji, Number(x.count)]));
        assert.deepEqual(r.reactions, reactions);
      }
      assert.deepEqual(messages.find((r) => r.seq === 2)!.reactions, { "👍": 2, "🎉": 1 });
      assert.equal(messages.find((r) => r.seq === Number(edited.seq))!.text, "after edit");
      assert.equal(messages.find((r) => r.seq === Number(deleted.seq))!.text, undefined, "a deleted message has no text");
    });
  }

  it("writes encrypted messages as their envelopes in base64 (never decrypted) and zips the conversation's attachments", async () => {
    const [a, b, c] = await newUsers(server, 3, "expz");
    const A = server.clientsFor(a!, "grpc");
    const sealed = await createEncrypted(A, ConversationType.GROUP, [b!, c!]);
    const sent = [];
    for (let i = 0; i < 9; i++) sent.push({ envelope: sealedEnvelope(sealed.keyEpoch), message: null as unknown });
    for (const s of sent) s.message = await sendEnvelope(A, sealed.id, s.envelope);
    const attachment = (await A.media.uploadMedia({ data: new Uint8Array(300).fill(7), conversationId: sealed.id })).media!;

    const { job, data } = await exportAndDownload(A, { conversationId: sealed.id }, ExportFormat.ZIP);
    assert.equal(job.output!.fileName, `conversation-${sealed.id}.zip`);
    assert.equal(job.output!.contentType, "application/zip");
    const entries = await unzip(data);
    assert.deepEqual([...entries.keys()].sort(), [`conversation-${sealed.id}.jsonl`, `media/${attachment.id}`].sort());
    assert.deepEqual(entries.get(`media/${attachment.id}`), Buffer.from(new Uint8Array(300).fill(7)));
    const messages = parseJsonl(entries.get(`conversation-${sealed.id}.jsonl`)!).filter((r) => r.type === "message");
    assert.equal(messages.length, sent.length);
    for (const [i, s] of sent.entries()) {
      const envelope = messages[i]!.envelope as Record<string, unknown>;
      assert.equal(messages[i]!.text, undefined);
      assert.equal(envelope.ciphertext, Buffer.from(s.envelope.ciphertext!).toString("base64"), "ciphertext as sent");
      assert.equal(envelope.nonce, Buffer.from(s.envelope.nonce!).toString("base64"));
      assert.equal(envelope.key_id, s.envelope.keyId);
    }
  });

  it("exports all of a user's own data and nothing of anyone else's", async () => {
    const [u, v, w] = await newUsers(server, 3, "mine");
    const U = server.clientsFor(u!, "connect");
    const V = server.clientsFor(v!, "grpc");
    const group = await createGroup(V, [u!, w!], "shared");
    const mine = await sendText(U, group.id, `mine-${randomUUID()}`);
    const theirsText = `theirs-${randomUUID()}`;
    const theirs = await sendText(V, group.id, theirsText);
    await U.messages.addReaction({ conversationId: group.id, seq: theirs.seq, emoji: "👍" });
    await V.messages.addReaction({ conversationId: group.id, seq: mine.seq, emoji: "🎉" });
    await U.social.follow({ userId: v! });
    await U.social.block({ userId: w! });
    await V.social.follow({ userId: u! });
    await U.notifications.setEmailDigestSettings({ emailAddress: "u@example.org", frequency: EmailDigestFrequency.DAILY });
    await V.notifications.setEmailDigestSettings({ emailAddress: "v-secret@example.org", frequency: EmailDigestFrequency.HOURLY });
    const myStory = await postStory(U, StoryPrivacy.PUBLIC, { caption: "my story" });
    const theirStory = await postStory(V, StoryPrivacy.PUBLIC, { caption: `their story ${theirsText}` });

    const { job, data } = await exportAndDownload(U, { myData: true }, ExportFormat.ZIP);
    assert.equal(job.kind, JobKind.USER_DATA_EXPORT);
    const entries = await unzip(data);
    const jsonlName = [...entries.keys()].find((n) => n.endsWith(".jsonl"))!;
    const text = entries.get(jsonlName)!.toString();
    assert.ok(!text.includes(theirsText), "nothing of another user's messages or stories");
    assert.ok(!text.includes("🎉"), "no reaction someone else made");
    assert.ok(!text.includes("v-secret@example.org"), "no one else's settings");
    const records = parseJsonl(text);
    const of = (type: string) => records.filter((r) => r.type === type);
    assert.equal(of("profile")[0]!.id, u);
    assert.deepEqual(of("membership").map((m) => m.conversation_id), [group.id]);
    assert.deepEqual(of("message").map((m) => m.id), [mine.id]);
    assert.equal(of("message")[0]!.text, mine.content.value);
    assert.deepEqual(of("message_reaction").map((r) => [r.seq, r.emoji]), [[Number(theirs.seq), "👍"]]);
    assert.deepEqual(of("story").map((s: JsonRecord) => s.id), [myStory.id]);
    assert.deepEqual(of("follow").map((f) => f.user_id), [v]);
    assert.deepEqual(of("block").map((f) => f.user_id), [w]);
    assert.deepEqual(of("email_digest_setting").map((e) => e.email_address), ["u@example.org"]);
    assert.ok(entries.has(`media/${myStory.media!.id}`), "my story's media is in the ZIP");
    assert.ok(!entries.has(`media/${theirStory.media!.id}`), "theirs is not");
  });

  it("sends job_progressed events to the owner's Subscribe stream, ending with the finished job", async () => {
    const [a, b, c] = await newUsers(server, 3, "expev");
    const A = server.clientsFor(a!, "grpc");
    const group = await createGroup(A, [b!, c!]);
    for (let i = 0; i < 15; i++) await sendText(A, group.id, `m${i}`);
    const feed = await openLiveFeed(A, { label: "owner" });
    try {
      const job = (await A.jobs.startExport({ target: { case: "conversationId", value: group.id } })).job!;
      const { event } = await feed.waitForEvent((e) => e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id && e.kind.value.job.status === JobStatus.SUCCEEDED, "the finished job's event", { timeoutMs: 20_000 });
      assert.equal(event.kind.case, "jobProgressed");
      const seen = feed.events.filter((e) => e.kind.case === "jobProgressed" && e.kind.value.job?.id === job.id).map((e) => (e.kind.value as { job: { progress: { itemsDone: bigint } } }).job.progress.itemsDone);
      assert.ok(seen.length >= 2, "an event at the start and one at the end");
      assert.deepEqual(seen, [...seen].sort((x, y) => Number(x - y)), "progress in events never goes back");
    } finally {
      feed.close();
    }
  });

  it("downloads from an offset; at the very end one empty frame tells the size", async () => {
    const [a, b, c] = await newUsers(server, 3, "expoff");
    const A = server.clientsFor(a!, "connect");
    const group = await createGroup(A, [b!, c!]);
    for (let i = 0; i < 10; i++) await sendText(A, group.id, `offset ${i}`);
    const { job, data } = await exportAndDownload(A, { conversationId: group.id });
    const half = BigInt(Math.floor(data.length / 2));
    const rest = await download(A, job.id, half);
    assert.deepEqual(rest.data, data.subarray(Number(half)), "the bytes from the offset");
    const atEnd = await download(A, job.id, BigInt(data.length));
    assert.equal(atEnd.data.length, 0);
    assert.equal(atEnd.frames, 1, "one empty frame telling the size");
    assert.equal(atEnd.total, BigInt(data.length));
  });
});
