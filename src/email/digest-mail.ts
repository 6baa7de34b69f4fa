/**
 * Writes a digest email (subject, plain text and HTML) from what a user missed. Pure: no I/O.
 * Plain messages show conversation, sender, time and text; an end-to-end encrypted
 * conversation shows only how many messages arrived (the items carry no text for them).
 * Everything a user wrote (names, text) is escaped in the HTML.
 */
import { ConversationKind } from "../conversations/conversation-repository.ts";
import type { MissedItem } from "./digest-repository.ts";

export interface DigestMail {
  subject: string;
  text: string;
  html: string;
}

interface Section {
  title: string;
  encrypted: MissedItem[];
  plain: MissedItem[];
}

export function composeDigest(items: readonly MissedItem[], truncated: boolean): DigestMail {
  const sections = groupByConversation(items);
  const subject = `You missed ${describeCounts(items)} on Parley`;
  const more = truncated ? "…and more: open Parley to see everything." : null;
  const footer = "You get this email because email digests are on in your Parley notification settings; set the frequency to OFF there to stop them.";

  const textLines = ["Here is what you missed on Parley.", ""];
  for (const section of sections) {
    textLines.push(section.title);
    for (const item of section.plain) textLines.push(`  ${formatTime(item.created_at)} · ${item.sender_name}${item.mention ? " (mentioned you)" : ""}: ${plainText(item)}`);
    if (section.encrypted.length > 0) textLines.push(`  ${encryptedLine(section.encrypted)}`);
    textLines.push("");
  }
  if (more) textLines.push(more, "");
  textLines.push("-- ", footer);

  const html = [
    `<!doctype html><html><body style="font-family: sans-serif">`,
    `<p>Here is what you missed on Parley.</p>`,
    ...sections.map(
      (section) =>
        `<h3>${escapeHtml(section.title)}</h3><ul>` +
        section.plain
          .map(
            (item) =>
              `<li><span style="color:#666">${escapeHtml(formatTime(item.created_at))}</span> <b>${escapeHtml(item.sender_name)}</b>` +
              `${item.mention ? " (mentioned you)" : ""}: ${escapeHtml(plainText(item))}</li>`,
          )
          .join("") +
        (section.encrypted.length > 0 ? `<li><i>${escapeHtml(encryptedLine(section.encrypted))}</i></li>` : "") +
        `</ul>`,
    ),
    more ? `<p>${escapeHtml(more)}</p>` : "",
    `<hr><p style="color:#666; font-size: small">${escapeHtml(footer)}</p>`,
    `</body></html>`,
  ].join("\n");
  return { subject, text: textLines.join("\n"), html };
}

function groupByConversation(items: readonly MissedItem[]): Section[] {
  const sections = new Map<string, Section>();
  for (const item of items) {
    let section = sections.get(item.conversation_id);
    if (!section) {
      section = { title: titleOf(item), encrypted: [], plain: [] };
      sections.set(item.conversation_id, section);
    }
    (item.encrypted ? section.encrypted : section.plain).push(item);
  }
  return [...sections.values()];
}

function titleOf(item: MissedItem): string {
  if (item.conversation_type === ConversationKind.DIRECT) return `Direct messages with ${item.conversation_name}`;
  return item.conversation_name === "" ? "A group" : `In ${item.conversation_name}`;
}

function describeCounts(items: readonly MissedItem[]): string {
  const mentions = items.filter((i) => i.mention).length;
  const direct = items.length - mentions;
  const parts = [];
  if (mentions > 0) parts.push(`${mentions} mention${mentions === 1 ? "" : "s"}`);
  if (direct > 0) parts.push(`${direct} direct message${direct === 1 ? "" : "s"}`);
  return parts.join(" and ");
}

function encryptedLine(items: readonly MissedItem[]): string {
  const latest = items.reduce((a, b) => (a.created_at > b.created_at ? a : b));
  const n = items.length;
  return `${n} new encrypted message${n === 1 ? "" : "s"} (latest ${formatTime(latest.created_at)}); open Parley to read ${n === 1 ? "it" : "them"}`;
}

function plainText(item: MissedItem): string {
  // Line breaks would break the one-line-per-message layout of the plain text part.
  const text = (item.text ?? "").replace(/\s+/g, " ").trim();
  return text === "" ? "(no text)" : text;
}

function formatTime(at: Date): string {
  return `${at.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
