/**
 * Every NATS name Parley uses: subjects, streams, KV buckets. All carry a prefix
 * (NATS_PREFIX) so that deployments, and test runs, sharing one NATS never see each other.
 */
export interface Subjects {
  readonly prefix: string;
  /** Where a committed event is published: routed by conversation (or user). */
  event(conversationId: string | null, targetUserId: string | null): string;
  /** Every committed event: what each node's feed hub subscribes to. */
  readonly allEvents: string;
  /** The JetStream stream that keeps committed events for durable consumers. */
  readonly eventStream: string;
  /** Typing signals of one conversation (core NATS, never stored). */
  typing(conversationId: string): string;
  /** Every ephemeral signal (typing, presence). */
  readonly allEphemeral: string;
  /** Presence changes of one user (core NATS, never stored). */
  presence(userId: string): string;
  /** The KV bucket holding who is connected where, with a TTL. */
  readonly presenceBucket: string;
}

/** NATS tokens cannot hold dots, spaces or wildcards; user ids can, so they are encoded. */
export function subjectToken(value: string): string {
  return Buffer.from(value).toString("base64url") || "_";
}

export function createSubjects(prefix: string): Subjects {
  if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new Error(`invalid NATS prefix "${prefix}"`);
  const streamPrefix = prefix.toUpperCase().replace(/-/g, "_");
  return {
    prefix,
    event: (conversationId, targetUserId) =>
      conversationId !== null ? `${prefix}.events.conv.${conversationId}` : `${prefix}.events.user.${subjectToken(targetUserId ?? "")}`,
    allEvents: `${prefix}.events.>`,
    eventStream: `${streamPrefix}_EVENTS`,
    typing: (conversationId) => `${prefix}.ephemeral.typing.${conversationId}`,
    allEphemeral: `${prefix}.ephemeral.>`,
    presence: (userId) => `${prefix}.ephemeral.presence.${subjectToken(userId)}`,
    presenceBucket: `${streamPrefix}_presence`,
  };
}
