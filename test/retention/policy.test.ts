/**
 * The retention rule and its inputs, as pure functions: the deadline (the shorter retention,
 * the floor), the duration a client may set, and the configuration.
 */
import assert from "node:assert/strict";
import { loadConfig, ConfigError } from "../../src/config.ts";
import { InvalidInputError } from "../../src/errors.ts";
import { parseRetention, RetentionPolicy } from "../../src/retention/index.ts";

const NOW = new Date("2030-01-02T03:04:05.678Z");
const at = (ms: number) => new Date(NOW.getTime() - ms);

describe("retention rule", () => {
  it("takes the shorter of the deployment's and the conversation's retention, and never goes below the floor", () => {
    const none = new RetentionPolicy(null).at(NOW);
    assert.equal(none.deadline({ message_retention_seconds: null, retention_floor: null }), null, "nothing set: kept for good");
    assert.deepEqual(none.deadline({ message_retention_seconds: "60", retention_floor: null }), at(60_000));
    const day = new RetentionPolicy(86_400).at(NOW);
    assert.deepEqual(day.deadline({ message_retention_seconds: null, retention_floor: null }), at(86_400_000), "the deployment's alone");
    assert.deepEqual(day.deadline({ message_retention_seconds: 3600, retention_floor: null }), at(3_600_000), "a shorter own one");
    assert.deepEqual(day.deadline({ message_retention_seconds: "604800", retention_floor: null }), at(86_400_000), "a longer own one does not outlast it");
    const floor = at(60_000);
    assert.deepEqual(none.deadline({ message_retention_seconds: null, retention_floor: floor }), floor, "a floor alone");
    assert.deepEqual(day.deadline({ message_retention_seconds: null, retention_floor: floor }), floor, "a floor later than the deadline wins");
    assert.deepEqual(none.deadline({ message_retention_seconds: 60, retention_floor: at(3_600_000) }), at(60_000), "an earlier floor does not");
  });

  it("retains exactly what was created after the deadline", () => {
    const cutoff = new RetentionPolicy(null).at(NOW);
    const conversation = { message_retention_seconds: 60, retention_floor: null };
    assert.equal(cutoff.retains(conversation, at(60_000)), false, "at the deadline: gone");
    assert.equal(cutoff.retains(conversation, at(59_999)), true, "a millisecond after: kept");
    assert.equal(new RetentionPolicy(null).effectiveSeconds(null), null);
    assert.equal(new RetentionPolicy(100).effectiveSeconds("60"), 60);
  });

  it("accepts whole seconds from 60 to 100 years, zero to clear, and names the field otherwise", () => {
    assert.equal(parseRetention("message_retention", { seconds: 0n, nanos: 0 } as never), null);
    assert.equal(parseRetention("message_retention", { seconds: 60n, nanos: 0 } as never), 60);
    assert.equal(parseRetention("message_retention", { seconds: 3_153_600_000n, nanos: 0 } as never), 3_153_600_000);
    for (const [seconds, nanos] of [[59n, 0], [-60n, 0], [0n, 1], [60n, 5], [0n, -5], [3_153_600_001n, 0], [60n, 1_000_000_000]] as const) {
      assert.throws(
        () => parseRetention("message_retention", { seconds, nanos } as never),
        (e: unknown) => e instanceof InvalidInputError && e.violations[0]?.field === "message_retention",
        `${seconds}s ${nanos}ns`,
      );
    }
  });

  it("reads MESSAGE_RETENTION_DAYS (0 or unset: kept for good) and RETENTION_SWEEP_INTERVAL_SECONDS, refusing bad values by name", () => {
    const base = { JWT_SECRET: "x".repeat(32) };
    assert.deepEqual(loadConfig(base).retention, { messageRetentionSeconds: null, sweepIntervalMs: 60_000 });
    assert.equal(loadConfig({ ...base, MESSAGE_RETENTION_DAYS: "0" }).retention.messageRetentionSeconds, null);
    assert.deepEqual(loadConfig({ ...base, MESSAGE_RETENTION_DAYS: "30", RETENTION_SWEEP_INTERVAL_SECONDS: "5" }).retention, {
      messageRetentionSeconds: 30 * 86_400,
      sweepIntervalMs: 5_000,
    });
    for (const [name, value] of [["MESSAGE_RETENTION_DAYS", "-1"], ["MESSAGE_RETENTION_DAYS", "1.5"], ["MESSAGE_RETENTION_DAYS", "36501"], ["RETENTION_SWEEP_INTERVAL_SECONDS", "0"]]) {
      assert.throws(() => loadConfig({ ...base, [name!]: value }), (e: unknown) => e instanceof ConfigError && e.message.includes(name!), `${name}=${value}`);
    }
  });
});
