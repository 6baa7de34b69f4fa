/**
 * How text becomes searchable words, in one place: the query parser, the PostgreSQL index
 * and the highlighter all use it, so a query word and a document word compare equal exactly
 * when this module says they do. A word is a run of Unicode letters, digits and combining
 * marks; it is lowercased and Latin accents are folded ("Café" → "cafe"), much like a
 * standard tokenizer with lowercase and ASCII folding.
 */

/** A word of a text and where it sits (UTF-16 offsets, for slicing the original text). */
export interface Token {
  /** The normalized form that is indexed and compared. */
  readonly term: string;
  readonly start: number;
  readonly end: number;
}

const WORD = /[\p{L}\p{N}\p{M}]+/gu;
/** A Latin letter followed by the accents NFKD split off it. */
const LATIN_ACCENTS = /(\p{Script=Latin})\p{Mn}+/gu;
/** Latin letters that NFKD leaves alone but ASCII folding maps. */
const LIGATURES: Readonly<Record<string, string>> = { ß: "ss", æ: "ae", œ: "oe", ø: "o", ł: "l", đ: "d", ð: "d", þ: "th", ı: "i" };
const LIGATURE = /[ßæœøłđðþı]/g;

/** The indexed form of one word: lowercase, Latin accents folded. */
export function normalizeWord(word: string): string {
  return word
    .toLowerCase()
    .normalize("NFKD")
    .replace(LATIN_ACCENTS, "$1")
    .replace(LIGATURE, (c) => LIGATURES[c] ?? c)
    .normalize("NFC");
}

/** Every word of a text with its position in it. */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (const match of text.matchAll(WORD)) {
    tokens.push({ term: normalizeWord(match[0]), start: match.index, end: match.index + match[0].length });
  }
  return tokens;
}

/** The normalized words of a text, space-separated: what the PostgreSQL index parses. */
export function indexableText(text: string): string {
  return tokenize(text)
    .map((t) => t.term)
    .join(" ");
}
