/**
 * The privacy rule on its own: every tier against every relation, how stored flags become a
 * relation (blocks winning), and the deadline being exact.
 */
import assert from "node:assert/strict";
import { StoryPrivacy } from "../../gen/parley/v1/story_pb.ts";
import { canSee, relationOf, visibleTiers, type Relation } from "../../src/stories/index.ts";

const { PUBLIC, FOLLOWERS, CLOSE_FRIENDS } = StoryPrivacy;
const TIER_NAMES: Record<number, string> = { [PUBLIC]: "PUBLIC", [FOLLOWERS]: "FOLLOWERS", [CLOSE_FRIENDS]: "CLOSE_FRIENDS" };
const NOW = new Date("2026-01-01T12:00:00Z");
const LIVE = new Date(NOW.getTime() + 1000);

/** The matrix: tier × relation → may see. */
const MATRIX: [StoryPrivacy, Relation, boolean][] = [
  [PUBLIC, "author", true],
  [PUBLIC, "close_friend", true],
  [PUBLIC, "follower", true],
  [PUBLIC, "stranger", true],
  [PUBLIC, "blocked", false],
  [FOLLOWERS, "author", true],
  [FOLLOWERS, "close_friend", true],
  [FOLLOWERS, "follower", true],
  [FOLLOWERS, "stranger", false],
  [FOLLOWERS, "blocked", false],
  [CLOSE_FRIENDS, "author", true],
  [CLOSE_FRIENDS, "close_friend", true],
  [CLOSE_FRIENDS, "follower", false],
  [CLOSE_FRIENDS, "stranger", false],
  [CLOSE_FRIENDS, "blocked", false],
];

describe("story privacy rule", () => {
  for (const [privacy, relation, visible] of MATRIX) {
    it(`${TIER_NAMES[privacy]} story, ${relation}: ${visible ? "visible" : "hidden"}`, () => {
      assert.equal(canSee({ privacy, expiresAt: LIVE }, relation, NOW), visible);
      assert.equal(visibleTiers(relation).includes(privacy), visible, "the tiers queries filter on agree");
    });
  }

  it("hides every story from everyone, the author included, from the deadline on", () => {
    for (const relation of ["author", "close_friend", "follower", "stranger"] as const) {
      assert.equal(canSee({ privacy: PUBLIC, expiresAt: NOW }, relation, NOW), false, `${relation} at the deadline`);
      assert.equal(canSee({ privacy: PUBLIC, expiresAt: new Date(NOW.getTime() + 1) }, relation, NOW), true, `${relation} 1 ms before`);
    }
  });

  it("rejects tiers it does not know", () => {
    assert.equal(canSee({ privacy: StoryPrivacy.UNSPECIFIED, expiresAt: LIVE }, "author", NOW), false);
    assert.equal(canSee({ privacy: 99, expiresAt: LIVE }, "close_friend", NOW), false);
  });

  it("takes the strongest relation, with a block beating follows and close-friend entries", () => {
    const none = { isAuthor: false, blocked: false, closeFriend: false, follower: false };
    assert.equal(relationOf(none), "stranger");
    assert.equal(relationOf({ ...none, follower: true }), "follower");
    assert.equal(relationOf({ ...none, follower: true, closeFriend: true }), "close_friend");
    assert.equal(relationOf({ ...none, closeFriend: true }), "close_friend");
    assert.equal(relationOf({ ...none, follower: true, closeFriend: true, blocked: true }), "blocked");
    assert.equal(relationOf({ ...none, isAuthor: true, blocked: true }), "author");
  });
});
