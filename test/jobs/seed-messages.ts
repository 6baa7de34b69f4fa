/**
 * Seeds a conversation with many messages straight into PostgreSQL (bypassing the API, which
 * would take minutes for 100,000): seq 1..n gapless, last_seq moved to n. Every 97th message is
 * an encrypted envelope, every 89th deleted, every 50th has reactions, every 3rd from the second
 * sender. Used by the SIGKILL test and bench:export.
 */
import pg from "pg";

export interface SeedOptions {
  databaseUrl: string;
  conversationId: string;
  senders: readonly [string, string];
  count: number;
}

export async function seedMessages({ databaseUrl, conversationId, senders, count }: SeedOptions): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("begin");
    const { rows } = await client.query<{ last_seq: string }>("select last_seq from conversations where id = $1 for update", [conversationId]);
    const from = Number(rows[0]!.last_seq) + 1;
    const to = from + count - 1;
    // In slices of 100,000: one statement per slice keeps memory flat for a million.
    for (let start = from; start <= to; start += 100_000) {
      const end = Math.min(to, start + 99_999);
      await client.query(
        `insert into messages (conversation_id, seq, id, sender_id, client_message_id, created_at, body_text,
           envelope_ciphertext, envelope_nonce, envelope_algorithm, envelope_key_id, envelope_key_epoch, deleted_at, deleted_by)
         select $1, g, gen_random_uuid(), case when g % 3 = 0 then $3 else $2 end, 'seed-' || g,
           now() - ($5::int8 - g) * interval '1 millisecond',
           case when g % 97 = 0 or g % 89 = 0 then null else 'seeded message ' || g || ' "quoted" ✓' end,
           case when g % 97 = 0 and g % 89 <> 0 then convert_to('sealed ' || g, 'UTF8') end,
           case when g % 97 = 0 and g % 89 <> 0 then '\\x00112233'::bytea end,
           case when g % 97 = 0 and g % 89 <> 0 then 'parley-sender-key-v1' end,
           case when g % 97 = 0 and g % 89 <> 0 then 'sk-seed' end,
           case when g % 97 = 0 and g % 89 <> 0 then 1 end,
           case when g % 89 = 0 then now() end,
           case when g % 89 = 0 then $2 end
         from generate_series($4::int8, $6::int8) g`,
        [conversationId, senders[0], senders[1], start, to, end],
      );
      await client.query(
        `insert into message_reactions (conversation_id, seq, emoji, user_id)
         select $1, g, e, u from generate_series($2::int8, $3::int8) g, unnest(array['👍', '🎉']) e, unnest($4::text[]) u
         where g % 50 = 0 and g % 89 <> 0 and (e = '👍' or u = ($4::text[])[1])`,
        [conversationId, start, end, [...senders]],
      );
      await client.query(
        `insert into message_reaction_counts (conversation_id, seq, emoji, count)
         select conversation_id, seq, emoji, count(*) from message_reactions
         where conversation_id = $1 and seq between $2 and $3 group by conversation_id, seq, emoji`,
        [conversationId, start, end],
      );
    }
    await client.query("update conversations set last_seq = $2 where id = $1", [conversationId, to]);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}
