/**
 * Turns what a user typed into a small syntax tree: words, "quoted phrases" and -exclusions.
 * Nothing else is syntax: every other character is text, and the backends only ever receive
 * the tree's normalized words (as bind parameters, or as OpenSearch match_phrase text), so no
 * input can reach a query language as an operator.
 */
import { InvalidInputError } from "../errors.ts";
import { tokenize } from "./text-analysis.ts";

/** Longest query, in characters (code points). */
export const MAX_QUERY_CHARS = 512;
/** Most terms (words, phrases and exclusions) in one query. */
export const MAX_QUERY_TERMS = 16;

/** One word or phrase of a query. */
export interface SearchTerm {
  /** As the user typed it (without quotes or the minus sign). */
  readonly text: string;
  /** Its normalized words, in order; several words must appear together, in this order. */
  readonly words: readonly string[];
}

export interface ParsedQuery {
  /** Terms a message must contain (at least one). */
  readonly include: readonly SearchTerm[];
  /** Terms a message must not contain. */
  readonly exclude: readonly SearchTerm[];
}

/** Parses a query; throws InvalidInputError("query") when it is too long or has no word to look for. */
export function parseQuery(input: string): ParsedQuery {
  if ([...input].length > MAX_QUERY_CHARS) throw new InvalidInputError("query", `is longer than ${MAX_QUERY_CHARS} characters`);
  const include: SearchTerm[] = [];
  const exclude: SearchTerm[] = [];
  for (const raw of scanTerms(input)) {
    const words = tokenize(raw.text).map((t) => t.term);
    if (words.length === 0) continue; // punctuation alone: nothing to look for
    (raw.excluded ? exclude : include).push({ text: raw.text, words });
    if (include.length + exclude.length > MAX_QUERY_TERMS) throw new InvalidInputError("query", `has more than ${MAX_QUERY_TERMS} terms`);
  }
  if (include.length === 0) {
    throw new InvalidInputError("query", "must contain at least one word to search for (exclusions alone match nothing)");
  }
  return { include, exclude };
}

interface RawTerm {
  text: string;
  excluded: boolean;
}

/** Splits at whitespace, keeping "quoted text" together; a leading minus marks an exclusion. */
function* scanTerms(input: string): Generator<RawTerm> {
  let i = 0;
  while (i < input.length) {
    if (/\s/u.test(input[i]!)) {
      i++;
      continue;
    }
    const excluded = input[i] === "-" && i + 1 < input.length && !/\s/u.test(input[i + 1]!);
    if (excluded) i++;
    let end: number;
    let text: string;
    if (input[i] === '"') {
      // An unclosed quote runs to the end of the query.
      const close = input.indexOf('"', i + 1);
      end = close === -1 ? input.length : close + 1;
      text = input.slice(i + 1, close === -1 ? input.length : close);
    } else {
      end = i;
      while (end < input.length && !/\s/u.test(input[end]!) && input[end] !== '"') end++;
      text = input.slice(i, end);
    }
    yield { text, excluded };
    i = end;
  }
}
