/**
 * Which events a user's feed shows: those of the conversations they are a member of at the
 * event's position, plus those addressed to them. Live delivery and replay both run this one
 * rule in log order, so a replay shows exactly what a live stream showed.
 */
import type { StoredEvent } from "../log/event-log.ts";

/** What an event does to the set of conversations a user follows. */
export type MembershipChange = { follow: string } | { unfollow: string } | null;

export function membershipChange(stored: StoredEvent, userId: string): MembershipChange {
  const { kind } = stored.event;
  if (stored.conversationId === null) return null;
  if (kind.case === "memberAdded" && kind.value.member?.userId === userId) return { follow: stored.conversationId };
  if (kind.case === "memberRemoved" && kind.value.userId === userId) return { unfollow: stored.conversationId };
  return null;
}

export function isVisibleTo(stored: StoredEvent, userId: string, following: ReadonlySet<string>): boolean {
  return (stored.conversationId !== null && following.has(stored.conversationId)) || stored.targetUserId === userId;
}

/**
 * The conversations the user followed at a past position, from what they follow now and
 * their own membership events after that position (undone newest first).
 */
export function membershipAt(current: Iterable<string>, laterOwnEvents: readonly StoredEvent[], userId: string): Set<string> {
  const following = new Set(current);
  for (let i = laterOwnEvents.length - 1; i >= 0; i--) {
    const change = membershipChange(laterOwnEvents[i]!, userId);
    if (change && "follow" in change) following.delete(change.follow);
    if (change && "unfollow" in change) following.add(change.unfollow);
  }
  return following;
}
