/**
 * A synthetic chat corpus with a realistic word distribution: a vocabulary ranked like
 * natural language (the most common English words first, then invented words), and words
 * drawn with Zipf's law (the word of rank r with probability ∝ 1/r), so a few words are in
 * most messages and most words are rare — what makes "broad" and "selective" queries
 * differ the way they do on real chat. Deterministic for a seed.
 */

/** The most frequent English words, most common first: the head of the distribution. */
const COMMON = `the be to of and a in that have i it for not on with he as you do at this but his by from they we say her she
or an will my one all would there their what so up out if about who get which go me when make can like time no just him
know take people into year your good some could them see other than then now look only come its over think also back after
use two how our work first well way even new want because any these give day most us is was are been has had were said did
going really yes ok okay thanks please sure maybe tomorrow tonight today later soon meeting call lunch dinner coffee home
office team project deadline review plan weekend trip train flight hotel car bus ticket price money pay order send check
photo video link file doc update fix bug release deploy test build server client issue ticket note idea question answer`.split(/\s+/);

/** A small, fast, seedable PRNG (mulberry32). */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr"];
const VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou"];
const CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng", "ck"];

/** `size` distinct lowercase words, ranked: common English first, then invented words of 2–3 syllables. */
export function vocabulary(size: number, random: () => number): string[] {
  const words = new Set(COMMON.slice(0, size));
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  while (words.size < size) {
    const syllables = 2 + Math.floor(random() * 2);
    let word = "";
    for (let i = 0; i < syllables; i++) word += pick(ONSETS) + pick(VOWELS) + (i === syllables - 1 ? pick(CODAS) : "");
    words.add(word);
  }
  return [...words];
}

/** A rank from 1 to n with P(r) ∝ 1/r (log-uniform, which is Zipf with exponent 1). */
export function zipfRank(n: number, random: () => number): number {
  return Math.min(n, Math.floor(Math.exp(random() * Math.log(n + 1))));
}

/** A message of 4 to 24 words drawn from the vocabulary by Zipf's law. */
export function message(words: readonly string[], random: () => number): string {
  const length = 4 + Math.floor(random() * 21);
  const out: string[] = [];
  for (let i = 0; i < length; i++) out.push(words[zipfRank(words.length, random) - 1]!);
  return out.join(" ");
}
