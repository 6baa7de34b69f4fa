/**
 * Presence: a user is online while they hold a Subscribe stream on any node. The feed
 * calls streamOpened/streamClosed for every stream on this node; the tracker keeps the
 * shared registry up to date and announces changes to the user's conversation partners.
 */
export interface PresenceInfo {
  online: boolean;
  /** When the user was last online; null if never, or while online. */
  lastSeenAt: Date | null;
}

export interface PresenceTracker {
  /** A Subscribe stream of this user opened on this node. */
  streamOpened(userId: string): void;
  /** A Subscribe stream of this user closed on this node. */
  streamClosed(userId: string): void;
  /** Presence of users, for GetPresence. Unknown users are left out of the map. */
  lookup(userIds: readonly string[]): Promise<Map<string, PresenceInfo>>;
  /** Stops heartbeats; this node's users go offline. */
  close(): Promise<void>;
}
