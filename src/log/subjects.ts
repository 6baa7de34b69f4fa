/**
 * Every NATS name Parley uses: subjects, streams, KV buckets. All carry a prefix
 * (NATS_PREFIX) so that deployments, and test runs, sharing one NATS never see each other.
 */
export interface Subjects {
  readonly prefix: string;
  /**
   * Where a committed event is published: routed by conversation (or user), then by kind,
   * `<prefix>.events.conv.<id>.<category>.<action>`, so a consumer can filter one category.
   */
  event(route: EventRoute): string;
  /** Every committed event: what each node's feed hub subscribes to. */
  readonly allEvents: string;
  /** Every committed event of conversations (not those addressed to a user alone). */
  readonly allConversationEvents: string;
  /** Every committed event of one category ("message" → created, edited, deleted). */
  eventsOfCategory(category: string): string;
  /** A work item's subject: `<prefix>.work.<tokens>`. */
  work(...tokens: string[]): string;
  /** Every work item. */
  readonly allWork: string;
  /** A job's work item: `<prefix>.work.job.<chunk|finalize>` (see src/jobs). */
  jobWork(step: "chunk" | "finalize"): string;
  /** Every job work item: the job-runner consumer's filter. */
  readonly allJobWork: string;
  /** The JetStream stream that keeps work items until a consumer has done them. */
  readonly workStream: string;
  /** A durable consumer's name under this prefix. */
  durable(name: string): string;
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
  /** One user's push outbox entries: `<prefix>.push.<base64url user id>`. */
  push(userId: string): string;
  /** Every push outbox entry. */
  readonly allPush: string;
  /** The JetStream stream a push gateway consumes (the push outbox). */
  readonly pushStream: string;
}

/** What the event subject is made of. */
export interface EventRoute {
  conversationId: string | null;
  targetUserId: string | null;
  event: { kind: { case: string | undefined } };
}

/**
 * The subject tokens of an event kind: its first camelCase word, then the rest in snake_case
 * (messageCreated → message.created, readPositionMoved → read.position_moved).
 */
export function eventKindTokens(kindCase: string | undefined): string {
  if (!kindCase) return "unknown.unknown";
  const match = /^([a-z0-9]+)(.*)$/.exec(kindCase);
  const category = match?.[1] ?? kindCase;
  const action = (match?.[2] ?? "").replace(/[A-Z]/g, (c, i: number) => (i === 0 ? "" : "_") + c.toLowerCase());
  return `${category}.${action || "changed"}`;
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
    event: ({ conversationId, targetUserId, event }) => {
      const route = conversationId !== null ? `conv.${conversationId}` : `user.${subjectToken(targetUserId ?? "")}`;
      return `${prefix}.events.${route}.${eventKindTokens(event.kind.case)}`;
    },
    allEvents: `${prefix}.events.>`,
    allConversationEvents: `${prefix}.events.conv.>`,
    eventsOfCategory: (category) => `${prefix}.events.*.*.${category}.>`,
    work: (...tokens) => `${prefix}.work.${tokens.join(".")}`,
    allWork: `${prefix}.work.>`,
    jobWork: (step) => `${prefix}.work.job.${step}`,
    allJobWork: `${prefix}.work.job.>`,
    workStream: `${streamPrefix}_WORK`,
    durable: (name) => `${streamPrefix}_${name.replace(/[^A-Za-z0-9_-]/g, "_")}`,
    eventStream: `${streamPrefix}_EVENTS`,
    typing: (conversationId) => `${prefix}.ephemeral.typing.${conversationId}`,
    allEphemeral: `${prefix}.ephemeral.>`,
    presence: (userId) => `${prefix}.ephemeral.presence.${subjectToken(userId)}`,
    presenceBucket: `${streamPrefix}_presence`,
    push: (userId) => `${prefix}.push.${subjectToken(userId)}`,
    allPush: `${prefix}.push.>`,
    pushStream: `${streamPrefix}_PUSH`,
  };
}
