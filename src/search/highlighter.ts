/**
 * Snippets: a window of a message's current text around its first match, split into plain
 * and highlighted runs. Both backends use this one highlighter, so a match is highlighted
 * exactly when the index would match it (same tokenizer), and the text is the message as it
 * is now, never markup a client must escape.
 */
import type { ParsedQuery } from "./query-parser.ts";
import { tokenize, type Token } from "./text-analysis.ts";

/** A run of snippet text. */
export interface SnippetRun {
  text: string;
  highlighted: boolean;
}

/** Longest snippet, in UTF-16 units (about two lines). */
export const SNIPPET_CHARS = 200;
/** How much text comes before the first match when the message is longer than a snippet. */
const LEAD_CHARS = 60;

interface Range {
  start: number;
  end: number;
}

export function snippet(text: string, query: ParsedQuery): SnippetRun[] {
  const tokens = tokenize(text);
  const marks = matchRanges(tokens, query);
  const window = snippetWindow(text, tokens, marks[0]);
  const runs: SnippetRun[] = [];
  let at = window.start;
  for (const mark of marks) {
    const start = Math.max(mark.start, window.start);
    const end = Math.min(mark.end, window.end);
    if (start >= end) continue;
    if (start > at) runs.push({ text: text.slice(at, start), highlighted: false });
    runs.push({ text: text.slice(start, end), highlighted: true });
    at = end;
  }
  if (window.end > at) runs.push({ text: text.slice(at, window.end), highlighted: false });
  return runs;
}

/** Where each included word or phrase occurs, merged where they touch, in text order. */
function matchRanges(tokens: readonly Token[], query: ParsedQuery): Range[] {
  const ranges: Range[] = [];
  for (const term of query.include) {
    const n = term.words.length;
    for (let i = 0; i + n <= tokens.length; i++) {
      if (term.words.every((word, k) => tokens[i + k]!.term === word)) ranges.push({ start: tokens[i]!.start, end: tokens[i + n - 1]!.end });
    }
  }
  ranges.sort((a, b) => a.start - b.start);
  const merged: Range[] = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged;
}

/** A window of at most SNIPPET_CHARS that starts a little before the first match, cut at word edges. */
function snippetWindow(text: string, tokens: readonly Token[], first: Range | undefined): Range {
  if (text.length <= SNIPPET_CHARS) return { start: 0, end: text.length };
  const wanted = Math.max(0, (first?.start ?? 0) - LEAD_CHARS);
  const start = tokens.find((t) => t.start >= wanted)?.start ?? 0;
  const limit = start + SNIPPET_CHARS;
  const end = tokens.filter((t) => t.end <= limit && t.start >= start).at(-1)?.end ?? Math.min(limit, text.length);
  return { start, end: Math.max(end, Math.min(first?.end ?? start, text.length)) };
}
