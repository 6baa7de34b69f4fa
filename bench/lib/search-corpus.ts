/**
 * bench:search's corpus and query mix: a Zipf-vocabulary message corpus written straight into
 * `messages` and `message_search` with bulk SQL (the normalization the indexer uses), and the
 * kinds of query the bench asks, in their shares.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type pg from "pg";
import { SearchOrder, type SearchMessagesRequestSchema } from "../../gen/parley/v1/search_service_pb.ts";
import { newId } from "../../src/ids.ts";
import { indexableText } from "../../src/search/text-analysis.ts";
import { createRandom, message, vocabulary } from "./corpus.ts";
import { round } from "./util.ts";

export const SEARCHER = "bench-searcher";
const OTHER_MEMBERS = 5;
const USERS = 2000;
const LOAD_BATCH = 5000;
export const CORPUS_DAYS = 90;

export interface CorpusOptions {
  messages: number;
  conversations: number;
  /** How many of the conversations the searcher is a member of. */
  memberOf: number;
  vocabulary: number;
}

export interface Corpus {
  conversationIds: string[];
  /** The searcher's conversations. */
  mine: string[];
  loadSeconds: number;
}

export type SearchRequest = MessageInitShape<typeof SearchMessagesRequestSchema>;

export type QueryKind = "selective" | "medium" | "two-words" | "phrase" | "broad" | "broad-recency" | "exclusion" | "sender" | "date-range";
/** How often each kind is asked, out of 100. */
export const MIX: Record<QueryKind, number> = {
  selective: 25, medium: 20, "two-words": 15, phrase: 10, broad: 10, "broad-recency": 5, exclusion: 5, sender: 5, "date-range": 5,
};

/** The corpus's words and the random stream both the load and the query mix draw from. */
export class SearchCorpus {
  readonly options: CorpusOptions;
  readonly random = createRandom(20261125);
  readonly words: string[];

  constructor(options: CorpusOptions) {
    this.options = options;
    this.words = vocabulary(options.vocabulary, this.random);
  }

  /** Users, conversations and members through SQL, then messages and their search rows in bulk. */
  async load(pool: pg.Pool, progress: (line: string) => void = console.log): Promise<Corpus> {
    const { messages: MESSAGES, conversations: CONVERSATIONS, memberOf: MEMBER_OF } = this.options;
    const random = this.random;
    const started = performance.now();
    const users = [SEARCHER, ...Array.from({ length: USERS }, (_, i) => `member-${i}`)];
    await pool.query(`insert into users (id) select unnest($1::text[])`, [users]);
    const conversationIds = Array.from({ length: CONVERSATIONS }, () => newId());
    const members = conversationIds.map((_, c) => {
      const set = new Set<string>(c < MEMBER_OF ? [SEARCHER] : []);
      while (set.size < OTHER_MEMBERS + (c < MEMBER_OF ? 1 : 0)) set.add(`member-${Math.floor(random() * USERS)}`);
      return [...set];
    });
    const perConversation = Math.ceil(MESSAGES / CONVERSATIONS);
    await pool.query(
      `insert into conversations (id, type, name, created_by, last_seq, member_count)
       select id, 2, 'bench ' || ord, 'member-0', $2, $3 from unnest($1::uuid[]) with ordinality as c(id, ord)`,
      [conversationIds, perConversation, OTHER_MEMBERS + 1],
    );
    await pool.query(
      `insert into conversation_members (conversation_id, user_id, role) select c, u, 1 from unnest($1::uuid[], $2::text[]) as m(c, u)`,
      [members.flatMap((list, c) => list.map(() => conversationIds[c]!)), members.flat()],
    );
    await pool.query("drop index message_search_tsv; drop index message_search_recent");
    const start = Date.now() - CORPUS_DAYS * 86_400_000;
    const stepMs = (CORPUS_DAYS * 86_400_000) / perConversation;
    let written = 0;
    let lastReport = performance.now();
    const batches = Array.from({ length: Math.ceil(MESSAGES / LOAD_BATCH) }, (_, b) => b);
    const writeBatch = async (b: number) => {
      const rows = { c: [] as string[], s: [] as number[], id: [] as string[], sender: [] as string[], cid: [] as string[], at: [] as string[], body: [] as string[], text: [] as string[] };
      for (let i = b * LOAD_BATCH; i < Math.min(MESSAGES, (b + 1) * LOAD_BATCH); i++) {
        const c = i % CONVERSATIONS;
        const seq = Math.floor(i / CONVERSATIONS) + 1;
        const at = Math.floor(start + seq * stepMs + random() * stepMs);
        const body = message(this.words, random);
        rows.c.push(conversationIds[c]!);
        rows.s.push(seq);
        rows.id.push(newId(at));
        rows.sender.push(members[c]![Math.floor(random() * members[c]!.length)]!);
        rows.cid.push(`load-${i}`);
        rows.at.push(new Date(at).toISOString());
        rows.body.push(body);
        rows.text.push(indexableText(body));
      }
      await pool.query(
        `insert into messages (conversation_id, seq, id, sender_id, client_message_id, created_at, body_text)
         select * from unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])`,
        [rows.c, rows.s, rows.id, rows.sender, rows.cid, rows.at, rows.body],
      );
      await pool.query(
        `insert into message_search (conversation_id, seq, message_id, version, sender_id, created_at, tsv)
         select c, s, m, 1, snd, t, to_tsvector('simple', txt)
         from unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[]) as r(c, s, m, snd, t, txt)`,
        [rows.c, rows.s, rows.id, rows.sender, rows.at, rows.text],
      );
      written += rows.c.length;
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        progress(`   loaded ${written.toLocaleString("en")} messages (${round((performance.now() - started) / 1000, 0)} s)`);
      }
    };
    let next = 0;
    await Promise.all([0, 1].map(async () => {
      while (next < batches.length) await writeBatch(batches[next++]!);
    }));
    progress(`   building the indexes (${round((performance.now() - started) / 1000, 0)} s so far)`);
    await pool.query("set maintenance_work_mem = '256MB'");
    await pool.query("create index message_search_tsv on message_search using gin (tsv)");
    await pool.query("create index message_search_recent on message_search (conversation_id, created_at desc, message_id desc)");
    await pool.query("analyze messages; analyze message_search; analyze conversation_members");
    return { conversationIds, mine: conversationIds.slice(0, MEMBER_OF), loadSeconds: round((performance.now() - started) / 1000, 1) };
  }

  /** A word whose rank is in [from, to] (1 = most common). */
  wordOfRank(from: number, to: number): string {
    return this.words[from - 1 + Math.floor(this.random() * (Math.min(to, this.words.length) - from + 1))]!;
  }

  makeQuery(kind: QueryKind, senders: readonly string[]): SearchRequest {
    const medium = () => this.wordOfRank(30, 300);
    switch (kind) {
      case "selective":
        return { query: this.wordOfRank(3000, this.options.vocabulary) };
      case "medium":
        return { query: medium() };
      case "two-words":
        return { query: `${medium()} ${this.wordOfRank(100, 2000)}` };
      case "phrase": {
        const text = message(this.words, this.random).split(" ");
        const at = Math.floor(this.random() * (text.length - 1));
        return { query: `"${text[at]} ${text[at + 1]}"` };
      }
      case "broad":
        return { query: this.wordOfRank(1, 10) };
      case "broad-recency":
        return { query: this.wordOfRank(1, 10), order: SearchOrder.RECENCY };
      case "exclusion":
        return { query: `${this.wordOfRank(1, 10)} -${this.wordOfRank(11, 50)}` };
      case "sender":
        return { query: medium(), senderId: senders[Math.floor(this.random() * senders.length)]! };
      case "date-range": {
        const to = Date.now() - Math.floor(this.random() * CORPUS_DAYS) * 86_400_000;
        return { query: this.wordOfRank(1, 100), createdAfter: timestampFromMs(to - 7 * 86_400_000), createdBefore: timestampFromMs(to) };
      }
    }
  }

  pickKind(): QueryKind {
    let roll = this.random() * 100;
    for (const [kind, weight] of Object.entries(MIX) as [QueryKind, number][]) {
      roll -= weight;
      if (roll < 0) return kind;
    }
    return "selective";
  }
}
