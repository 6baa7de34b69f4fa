// A real SMTP server for tests: the code under test sends through nodemailer over TCP to this
// server, and tests look at what was actually delivered (envelope, headers, decoded bodies).
// Nothing is mocked; the MIME parsing below is just enough for what nodemailer writes
// (multipart/alternative, 7bit / quoted-printable / base64, RFC 2047 encoded words).
import { SMTPServer } from "smtp-server";
import type { AddressInfo } from "node:net";

/** One delivered mail, decoded. */
export interface ReceivedMail {
  /** The From header as written (e.g. `Parley <no-reply@localhost>`). */
  from: string;
  /** Envelope recipients (RCPT TO), lower-cased. */
  to: string[];
  /** Decoded Subject header. */
  subject: string;
  /** Decoded text/plain body ("" when absent). */
  text: string;
  /** Decoded text/html body ("" when absent). */
  html: string;
  /** Top-level headers, names lower-cased, values unfolded and decoded. */
  headers: Record<string, string>;
  /** The raw message as received. */
  raw: string;
  /** The user name the client authenticated with, if it did. */
  authUser: string | undefined;
}

export interface SmtpTestServer {
  /** `smtp://127.0.0.1:<port>` — put it in SMTP_URL. */
  url: string;
  /** Every mail delivered so far, in arrival order (a copy). */
  mails(): ReceivedMail[];
  /** Resolves with the first delivered mail (past or future) matching `predicate`. */
  waitForMail(predicate: (mail: ReceivedMail) => boolean, timeoutMs: number): Promise<ReceivedMail>;
  close(): Promise<void>;
}

/** Starts an SMTP server on a free local port. No TLS; any credentials are accepted. */
export async function startSmtpServer(): Promise<SmtpTestServer> {
  const received: ReceivedMail[] = [];
  const waiters = new Set<() => void>();
  const server = new SMTPServer({
    disabledCommands: ["STARTTLS"],
    authOptional: true,
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", callback);
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        const authUser = typeof session.user === "string" ? session.user : undefined;
        received.push(parseMail(raw, to, authUser));
        for (const wake of waiters) wake();
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails: () => [...received],
    waitForMail(predicate, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = received.find(predicate);
          if (!found) return false;
          cleanup();
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching mail within ${timeoutMs} ms (${received.length} received)`));
        }, timeoutMs);
        const wake = () => void check();
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(wake);
        };
        waiters.add(wake);
        check();
      });
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

interface Part {
  headers: Record<string, string>;
  body: string;
}

function parseMail(raw: string, to: string[], authUser: string | undefined): ReceivedMail {
  const top = splitPart(raw);
  let text = "";
  let html = "";
  for (const leaf of leaves(top)) {
    const type = (leaf.headers["content-type"] ?? "text/plain").toLowerCase();
    if (type.startsWith("text/plain") && !text) text = decodeBody(leaf);
    else if (type.startsWith("text/html") && !html) html = decodeBody(leaf);
  }
  return {
    from: top.headers["from"] ?? "",
    to,
    subject: top.headers["subject"] ?? "",
    text,
    html,
    headers: top.headers,
    raw,
    authUser,
  };
}

function splitPart(raw: string): Part {
  const normalized = raw.replace(/\r\n/g, "\n");
  const end = normalized.indexOf("\n\n");
  const head = end < 0 ? normalized : normalized.slice(0, end);
  const body = end < 0 ? "" : normalized.slice(end + 2);
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\n[ \t]+/g, " ").split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers[line.slice(0, colon).trim().toLowerCase()] = decodeWords(line.slice(colon + 1).trim());
  }
  return { headers, body };
}

function leaves(part: Part): Part[] {
  const type = part.headers["content-type"] ?? "";
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!type.toLowerCase().startsWith("multipart/") || !boundary) return [part];
  const sections = part.body.split(`--${boundary}`).slice(1);
  const result: Part[] = [];
  for (const section of sections) {
    if (section.startsWith("--")) break;
    result.push(...leaves(splitPart(section.replace(/^\n/, ""))));
  }
  return result;
}

function decodeBody(part: Part): string {
  const encoding = (part.headers["content-transfer-encoding"] ?? "7bit").toLowerCase();
  const body = part.body.replace(/\n$/, "");
  if (encoding === "base64") return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
  if (encoding === "quoted-printable") return decodeQuotedPrintable(body);
  return body;
}

function decodeQuotedPrintable(body: string): string {
  const softBreaksRemoved = body.replace(/=\n/g, "");
  const bytes: number[] = [];
  for (let i = 0; i < softBreaksRemoved.length; i++) {
    const ch = softBreaksRemoved[i]!;
    const hex = softBreaksRemoved.slice(i + 1, i + 3);
    if (ch === "=" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(ch, "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=` / `=?UTF-8?B?...?=`); whitespace between words is dropped. */
function decodeWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, "$1$2")
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_all, _charset: string, kind: string, data: string) =>
      kind.toUpperCase() === "B"
        ? Buffer.from(data, "base64").toString("utf8")
        : decodeQuotedPrintable(data.replace(/_/g, " ")),
    );
}
