/** Unit tests of the digest's text (pure: composeDigest) and of the address check. */
import assert from "node:assert/strict";
import { composeDigest } from "../../src/email/digest-mail.ts";
import type { MissedItem } from "../../src/email/digest-repository.ts";
import { emailAddressProblem } from "../../src/email/email-address.ts";

function item(fields: Partial<MissedItem>): MissedItem {
  return {
    conversation_id: "c1",
    conversation_type: 2,
    conversation_name: "Team",
    seq: "1",
    mention: true,
    encrypted: false,
    text: "hello",
    sender_id: "ada",
    sender_name: "Ada",
    created_at: new Date("2026-12-07T16:40:12Z"),
    ...fields,
  };
}

describe("composeDigest", () => {
  it("lists plain items with conversation, sender, time and text, grouped by conversation", () => {
    const mail = composeDigest(
      [item({}), item({ conversation_id: "d1", conversation_type: 1, conversation_name: "Bob", sender_name: "Bob", mention: false, text: "hi\nthere" })],
      false,
    );
    assert.equal(mail.subject, "You missed 1 mention and 1 direct message on Parley");
    assert.ok(mail.text.includes("In Team\n  2026-12-07 16:40 UTC · Ada (mentioned you): hello"), mail.text);
    assert.ok(mail.text.includes("Direct messages with Bob\n  2026-12-07 16:40 UTC · Bob: hi there"), mail.text);
  });

  it("escapes everything users wrote in the HTML part", () => {
    const mail = composeDigest([item({ conversation_name: `<script>"x"</script>`, sender_name: "A&B", text: `<img src=x onerror='y'>` })], false);
    assert.ok(!mail.html.includes("<script>") && !mail.html.includes("<img"), mail.html);
    assert.ok(mail.html.includes("&#60;script&#62;&#34;x&#34;&#60;/script&#62;"));
    assert.ok(mail.html.includes("A&#38;B"));
    assert.ok(mail.html.includes("&#60;img src=x onerror=&#39;y&#39;&#62;"));
  });

  it("says only how many encrypted messages arrived, and when the last did", () => {
    const sealed = (seq: string, minute: number) => item({ seq, encrypted: true, text: null, mention: false, created_at: new Date(`2026-12-07T16:${minute}:00Z`) });
    const mail = composeDigest([sealed("1", 10), sealed("2", 20)], false);
    assert.ok(mail.text.includes("2 new encrypted messages (latest 2026-12-07 16:20 UTC)"), mail.text);
    assert.ok(!mail.text.includes("(no text)"), "no per-message line for encrypted ones");
  });

  it("says there is more when the list was cut", () => {
    assert.ok(composeDigest([item({})], true).text.includes("…and more"));
  });
});

describe("emailAddressProblem", () => {
  it("accepts ordinary addresses", () => {
    for (const a of ["a@b", "ada@example.com", "Ada.Lovelace+tag@mail.example.co.uk", "o'neil@example.ie", "x_y-z@sub-domain.example"]) {
      assert.equal(emailAddressProblem(a), null, a);
    }
  });

  it("refuses what would not survive an SMTP envelope or a header", () => {
    for (const a of ["", "a", "a@", "@b", "a b@c", "a@b c", "a@b\n", "\"a\"@b", "a@[127.0.0.1]", "a@b_c.com", "a.@b", "a@b.", `${"x".repeat(250)}@b.com`]) {
      assert.notEqual(emailAddressProblem(a), null, JSON.stringify(a));
    }
  });
});
