/** What counts as a reaction emoji. */
import { InvalidInputError } from "../errors.ts";

/** Longest emoji in UTF-8 bytes: room for ZWJ families and flag tag sequences. */
export const MAX_EMOJI_BYTES = 32;

const graphemes = new Intl.Segmenter(undefined, { granularity: "grapheme" });
const PICTOGRAPHIC = /\p{Extended_Pictographic}|\p{Regional_Indicator}/u;
/** Keycaps (#️⃣ *️⃣ 0️⃣…9️⃣) are emoji built from ASCII, so the pattern above misses them. */
const KEYCAP = /^[0-9#*]\uFE0F?\u20E3$/u;

/**
 * Checks a reaction emoji: one grapheme cluster (so a ZWJ family or a skin-tone variant is
 * one reaction, and "👍👍" is not) of at most 32 bytes that is an emoji rather than text.
 * Returns it unchanged: clients compare emoji by their exact code points.
 */
export function requireEmoji(field: string, value: string): string {
  if (value === "") throw new InvalidInputError(field, "is required");
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > MAX_EMOJI_BYTES) throw new InvalidInputError(field, `is ${bytes} bytes; the limit is ${MAX_EMOJI_BYTES}`);
  let count = 0;
  for (const _ of graphemes.segment(value)) if (++count > 1) break;
  if (count !== 1) throw new InvalidInputError(field, "must be a single emoji");
  if (!PICTOGRAPHIC.test(value) && !KEYCAP.test(value)) throw new InvalidInputError(field, "must be an emoji");
  return value;
}
