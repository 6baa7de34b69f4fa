/**
 * `npm run chat -- <command>`: a terminal client on the SDK, to try Parley (and its encrypted
 * conversations) by hand. Everything the device keeps (outbox, feed cursor, keys) lives in a
 * FileStore under --home, so two homes are two devices.
 *
 *   register                                   creates the user and registers this device (every
 *                                              command does on its first run; this one says so)
 *   conversations                              lists conversations
 *   create --members a,b [--name n] [--encrypted] [--blind-search]
 *   send <conversation> <text>                 queues and sends (a send the server has not
 *                                              confirmed stays queued for the next run)
 *   tail [<conversation>]                      follows the feed and prints messages
 *   search <query> [--conversation id]
 *
 * Environment: PARLEY_URL (default http://localhost:8080), PARLEY_TOKEN (a bearer token;
 * `npm run token -- <userId>` prints one for a development server).
 */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ConversationType, type Conversation } from "../../gen/parley/v1/conversation_pb.ts";
import { createClient } from "@connectrpc/connect";
import { UserService } from "../../gen/parley/v1/user_service_pb.ts";
import { ParleyClient, withBearerToken, type DecodedMessage } from "../client/index.ts";
import { FileStore } from "../client/node/index.ts";
import { createChatCodec, describeDevice } from "./chat-codec.ts";

const USAGE = `usage: npm run chat -- <command> [options]
  register
  conversations
  create --members <id,id,…> [--name <name>] [--encrypted] [--blind-search]
  send <conversation> <text>
  tail [<conversation>]
  search <query> [--conversation <id>]
options: --home <dir> (default ./.parley-chat)
env: PARLEY_URL (default http://localhost:8080), PARLEY_TOKEN (npm run token -- <userId>)`;

/** How long `send` waits for the server before leaving the message in the outbox. */
const SEND_WAIT_MS = 10_000;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    home: { type: "string", default: "./.parley-chat" },
    members: { type: "string", default: "" },
    name: { type: "string", default: "" },
    encrypted: { type: "boolean", default: false },
    "blind-search": { type: "boolean", default: false },
    conversation: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
const [command, ...args] = positionals;
if (!command || values.help) exit(USAGE, command ? 0 : 2);

const token = process.env.PARLEY_TOKEN;
if (!token) exit("PARLEY_TOKEN is not set (a development server prints one with: npm run token -- <userId>)", 2);
const baseUrl = process.env.PARLEY_URL ?? "http://localhost:8080";

const transport = createConnectTransport({ baseUrl, httpVersion: "1.1", defaultTimeoutMs: 15_000 });
const store = new FileStore(path.resolve(values.home));
const tokenProvider = () => token;
const codec = await openDevice().catch((err: unknown) => exit(`cannot open this device at ${baseUrl}: ${err instanceof Error ? err.message : String(err)}`, 1));
const client = new ParleyClient({ transport, token: tokenProvider, store, codec });

/** Registers (first run) or restores this home's device, and takes in keys that came meanwhile. */
async function openDevice() {
  // The server says who the token is for (GetMe also creates the user on first use).
  const { user } = await createClient(UserService, withBearerToken(transport, tokenProvider)).getMe({});
  const opened = await createChatCodec({ store, transport, token: tokenProvider, userId: user!.id });
  await opened.syncInbox();
  return opened;
}

try {
  switch (command) {
    case "register":
      await register();
      break;
    case "conversations":
      for (const c of await client.conversations()) console.log(describeConversation(c));
      break;
    case "create":
      await create();
      break;
    case "send":
      await send(args[0], args.slice(1).join(" "));
      break;
    case "tail":
      await tail(args[0]);
      break;
    case "search":
      await search(args.join(" "), values.conversation);
      break;
    default:
      exit(`unknown command ${JSON.stringify(command)}\n${USAGE}`, 2);
  }
} catch (err) {
  await client.close();
  exit(`error: ${err instanceof Error ? err.message : String(err)}`, 1);
}
await client.close();
process.exit(0);

async function register(): Promise<void> {
  const me = await client.userId();
  console.log(`user ${me} at ${baseUrl}; device home ${path.resolve(values.home)}`);
  console.log(describeDevice(codec));
}

async function create(): Promise<void> {
  const memberIds = values.members.split(",").map((s) => s.trim()).filter(Boolean);
  if (memberIds.length === 0) exit("create needs --members <id,id,…>", 2);
  const conversation = await client.createConversation({
    memberIds,
    name: values.name || undefined,
    encrypted: values.encrypted,
    blindSearch: values["blind-search"],
  });
  console.log(describeConversation(conversation));
}

async function send(conversationId: string | undefined, text: string): Promise<void> {
  if (!conversationId || !text) exit("usage: send <conversation> <text>", 2);
  client.start();
  const pending = await client.send(conversationId, { text });
  const timeout = new Promise<"timeout">((r) => setTimeout(r, SEND_WAIT_MS, "timeout").unref());
  const result = await Promise.race([pending.message, timeout]);
  if (result === "timeout") {
    console.log(`queued as ${pending.localId}: the server did not answer yet; it will be sent on the next run`);
    return;
  }
  console.log(`sent #${result.seq} (${pending.localId})`);
}

async function tail(conversationId: string | undefined): Promise<void> {
  // The feed may hand over again what history just showed: print each seq once.
  let shownUpTo = 0n;
  if (conversationId) {
    for (const m of await client.history(conversationId, { limit: 20 })) {
      console.log(formatMessage(m));
      shownUpTo = m.seq;
    }
  }
  const stop = new AbortController();
  process.once("SIGINT", () => stop.abort());
  process.once("SIGTERM", () => stop.abort());
  client.start();
  for await (const e of client.events(stop.signal)) {
    if (e.type === "message" && (!conversationId || e.message.conversationId === conversationId)) {
      if (e.message.conversationId !== conversationId || e.message.seq > shownUpTo) console.log(formatMessage(e.message));
    }
    else if (e.type === "edited" && (!conversationId || e.message.conversationId === conversationId)) console.log(`${formatMessage(e.message)} (edited)`);
    else if (e.type === "resync") console.log(`-- resynced (${e.reason}); earlier messages may be missing here --`);
    else if (e.type === "connection") console.error(e.live ? "-- connected --" : "-- offline, reconnecting --");
    else if (e.type === "send_failed") console.error(`-- send ${e.localId} failed: ${e.reason} --`);
  }
}

async function search(query: string, conversationId: string | undefined): Promise<void> {
  if (!query) exit("usage: search <query> [--conversation id]", 2);
  const results = await client.search(query, conversationId ? { conversationIds: [conversationId] } : {});
  for (const r of results) console.log(formatMessage(r.message));
  if (results.length === 0) console.log("no matches");
}

function describeConversation(c: Conversation): string {
  const kind = c.type === ConversationType.DIRECT ? `direct with ${c.directPeerId}` : `group "${c.name}" (${c.memberCount} members)`;
  const flags = [c.encrypted ? `encrypted, epoch ${c.keyEpoch}` : "", c.blindSearch ? "blind search" : ""].filter(Boolean).join(", ");
  return `${c.id}  ${kind}${flags ? ` [${flags}]` : ""}  last #${c.lastSeq}, unread ${c.unreadCount}`;
}

function formatMessage(m: DecodedMessage): string {
  const body = m.deleted ? "(deleted)" : m.error ? `(cannot decrypt: ${m.error instanceof Error ? m.error.message : String(m.error)})` : m.text;
  const lock = m.encrypted ? "🔒 " : "";
  return `[${m.conversationId.slice(-6)} #${m.seq}] ${m.senderId}: ${lock}${body}`;
}

function exit(message: string, code: number): never {
  (code === 0 ? console.log : console.error)(message);
  process.exit(code);
}
