/**
 * The Kysely view of the database. int8 columns come back as strings from both drivers
 * (see createDatabase), so callers convert them with BigInt()/Number() where needed.
 */
import type { ColumnType, Generated } from "kysely";

type Int8 = ColumnType<string, string | number | bigint, string | number | bigint>;
/** An int8 column with a default. */
type Int8WithDefault = ColumnType<string, string | number | bigint | undefined, string | number | bigint>;
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface UsersTable {
  id: string;
  display_name: Generated<string>;
  avatar_media_id: Generated<string>;
  created_at: Timestamp;
  updated_at: Timestamp;
  last_seen_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface ConversationsTable {
  id: string;
  type: number;
  name: Generated<string>;
  description: Generated<string>;
  created_by: string;
  created_at: Timestamp;
  last_activity_at: Timestamp;
  last_seq: Int8WithDefault;
  member_count: Generated<number>;
  encrypted: Generated<boolean>;
  blind_search: Generated<boolean>;
  key_epoch: Generated<number>;
  /** The conversation's own message retention in seconds (migration 0010); null when none. */
  message_retention_seconds: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  /** Messages created at or before this are past retention for good (see src/retention/). */
  retention_floor: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface DirectPairsTable {
  user_low: string;
  user_high: string;
  conversation_id: string;
  encrypted: Generated<boolean>;
}

export interface ConversationMembersTable {
  conversation_id: string;
  user_id: string;
  role: number;
  joined_at: Timestamp;
  last_read_seq: Int8WithDefault;
  unread_count: Int8WithDefault;
  unread_mention_count: Int8WithDefault;
  read_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface MessagesTable {
  conversation_id: string;
  seq: Int8;
  id: string;
  sender_id: string;
  client_message_id: string;
  created_at: Timestamp;
  reply_to_seq: Int8 | null;
  body_text: string | null;
  envelope_ciphertext: Uint8Array | null;
  envelope_nonce: Uint8Array | null;
  envelope_algorithm: string | null;
  envelope_key_id: string | null;
  envelope_key_epoch: Int8 | null;
  version: Generated<number>;
  edited_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  deleted_by: ColumnType<string | null, string | null | undefined, string | null>;
  deleted_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  mentioned_user_ids: Generated<string[]>;
  mentions_everyone: Generated<boolean>;
  story_id: ColumnType<string | null, string | null | undefined, string | null>;
  story_author_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface MessageEditsTable {
  conversation_id: string;
  seq: Int8;
  version: number;
  body_text: string | null;
  envelope_ciphertext: Uint8Array | null;
  envelope_nonce: Uint8Array | null;
  envelope_algorithm: string | null;
  envelope_key_id: string | null;
  envelope_key_epoch: Int8 | null;
  created_at: Date;
  replaced_at: Date;
}

export interface ModerationLogTable {
  conversation_id: string;
  message_seq: Int8;
  message_id: string;
  sender_id: string;
  deleted_by: string;
  deleted_at: Date;
}

export interface NotificationsTable {
  id: string;
  user_id: string;
  source_event_id: string;
  kind: number;
  conversation_id: string;
  actor_id: string;
  message_seq: Int8WithDefault;
  via_everyone: Generated<boolean>;
  created_at: Timestamp;
  read_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  push: boolean;
  pushed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface NotificationSettingsTable {
  user_id: string;
  conversation_id: string;
  level: number;
  muted_until: Date | null;
}

export interface EventLogTable {
  singleton: Generated<boolean>;
  log_id: string;
  partitions: number;
}

export interface EventLogPartitionsTable {
  partition: number;
  position: Int8WithDefault;
}

export interface EventRelayCheckpointsTable {
  partition: number;
  relayed_through: Int8WithDefault;
}

export interface EventsTable {
  partition: number;
  position: Int8;
  id: string;
  conversation_id: string | null;
  target_user_id: string | null;
  payload: Uint8Array;
  created_at: Timestamp;
  message_seq: ColumnType<string | null, string | number | bigint | null | undefined, string | number | bigint | null>;
  reply_to_seq: ColumnType<string | null, string | number | bigint | null | undefined, string | number | bigint | null>;
}

export interface MessageReactionsTable {
  conversation_id: string;
  seq: Int8;
  emoji: string;
  user_id: string;
  created_at: Timestamp;
}

export interface MessageReactionCountsTable {
  conversation_id: string;
  seq: Int8;
  emoji: string;
  count: Int8;
}

export interface FollowsTable {
  follower_id: string;
  followee_id: string;
  created_at: Timestamp;
}

export interface CloseFriendsTable {
  owner_id: string;
  friend_id: string;
  created_at: Timestamp;
}

export interface BlocksTable {
  blocker_id: string;
  blocked_id: string;
  created_at: Timestamp;
}

export interface MediaTable {
  id: string;
  owner_id: string;
  type: number;
  content_type: string;
  size_bytes: Int8;
  created_at: Timestamp;
  /** Set for an encrypted attachment: the conversation whose members may read it. */
  conversation_id: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface StoriesTable {
  id: string;
  author_id: string;
  media_id: string;
  caption: Generated<string>;
  privacy: number;
  created_at: Timestamp;
  expires_at: Timestamp;
  view_count: Int8WithDefault;
}

export interface StoryViewsTable {
  story_id: string;
  viewer_id: string;
  viewed_at: Timestamp;
}

/** One per (author, privacy tier) with stories (migration 0016; kept by story-tray-repository.ts). */
export interface StoryTrayTable {
  author_id: string;
  privacy: number;
  story_count: number;
  newest_at: Timestamp;
  first_expires_at: Timestamp;
  last_expires_at: Timestamp;
}

/** How many of an (author, tier)'s stories a viewer has viewed (no row: none). */
export interface StoryTrayViewsTable {
  viewer_id: string;
  author_id: string;
  privacy: number;
  viewed_count: number;
}

export interface StoryReactionsTable {
  story_id: string;
  emoji: string;
  user_id: string;
  created_at: Timestamp;
}

export interface StoryReactionCountsTable {
  story_id: string;
  emoji: string;
  count: Int8;
}

export interface DevicesTable {
  user_id: string;
  id: string;
  signing_public_key: Uint8Array;
  box_public_key: Uint8Array;
  box_key_signature: Uint8Array;
  display_name: Generated<string>;
  created_at: Timestamp;
  revoked_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface DevicePrekeysTable {
  device_id: string;
  key_id: Int8;
  public_key: Uint8Array;
  signature: Uint8Array;
  claimed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface ToDeviceMessagesTable {
  recipient_device_id: string;
  n: ColumnType<string, never, never>;
  id: string;
  recipient_user_id: string;
  sender_user_id: string;
  sender_device_id: string;
  ciphertext: Uint8Array;
  nonce: Uint8Array;
  algorithm: string;
  prekey_id: Int8WithDefault;
  created_at: Timestamp;
}

export interface MessageBlindTokensTable {
  conversation_id: string;
  key_epoch: number;
  token: Uint8Array;
  seq: Int8;
}

export interface ReportsTable {
  id: string;
  reporter_id: string;
  reported_user_id: string;
  target_kind: number;
  target_key: string;
  conversation_id: string | null;
  message_seq: ColumnType<string | null, string | null | undefined, string | null>;
  story_id: string | null;
  target_user_id: string | null;
  reason: number;
  note: string;
  content_snapshot: string;
  status: Generated<number>;
  created_at: Date;
  resolved_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  resolved_by: ColumnType<string | null, string | null | undefined, string | null>;
  resolution: ColumnType<number | null, number | null | undefined, number | null>;
}

export interface AccountRestrictionsTable {
  user_id: string;
  kind: number;
  until: Date | null;
  reason: string;
  created_at: Date;
  created_by: string;
}

export interface AuditLogTable {
  id: string;
  operator_id: string;
  action: number;
  target_user_id: string | null;
  report_id: string | null;
  target_kind: number | null;
  conversation_id: string | null;
  message_seq: ColumnType<string | null, string | null | undefined, string | null>;
  story_id: string | null;
  until: Date | null;
  note: string;
  created_at: Date;
}

export interface AccountErasuresTable {
  user_id: string;
  requested_at: Timestamp;
  runner: ColumnType<string | null, string | null | undefined, string | null>;
  heartbeat_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  finished_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  messages_erased: Int8WithDefault;
}

/** Asynchronous jobs (migration 0013); enums are the proto numbers. */
export interface JobsTable {
  id: string;
  kind: number;
  owner_id: string;
  conversation_id: string | null;
  format: Generated<number>;
  params: ColumnType<Record<string, unknown>, string | undefined, string>;
  status: number;
  items_total: Int8WithDefault;
  items_done: Int8WithDefault;
  error: Generated<string>;
  output_name: string | null;
  output_type: string | null;
  output_size: Int8 | null;
  output_sha256: string | null;
  created_at: Timestamp;
  started_at: Date | null;
  finished_at: Date | null;
  expires_at: Date | null;
  last_event_at: Date | null;
  updated_at: Timestamp;
}

export interface JobChunksTable {
  job_id: string;
  chunk_no: number;
  range: ColumnType<Record<string, unknown>, string, string>;
  status: Generated<number>;
  items: Int8WithDefault;
  attempts: Generated<number>;
  runner: string | null;
  lease_until: Date | null;
}

/** How far the analytics consumer has applied each event log partition. */
export interface AnalyticsWatermarksTable {
  partition: number;
  position: Int8;
  log_id: string;
}

/** 'hour' or 'day' (the unit date_trunc takes). */
export type AnalyticsGranularity = "hour" | "day";

export interface AnalyticsConversationBucketsTable {
  conversation_id: string;
  granularity: AnalyticsGranularity;
  bucket: Date;
  messages: Int8WithDefault;
  active_members: Int8WithDefault;
  reactions: Int8WithDefault;
}

export interface AnalyticsConversationSendersTable {
  conversation_id: string;
  granularity: AnalyticsGranularity;
  bucket: Date;
  user_id: string;
}

export interface AnalyticsReactionMarksTable {
  conversation_id: string;
  seq: Int8;
  emoji: string;
  user_id: string;
  reacted_at: Date;
}

export interface AnalyticsAuthorBucketsTable {
  author_id: string;
  granularity: AnalyticsGranularity;
  bucket: Date;
  stories_posted: Int8WithDefault;
  views: Int8WithDefault;
  reach: Int8WithDefault;
  reactions: Int8WithDefault;
}

export interface AnalyticsStoryViewersTable {
  author_id: string;
  granularity: AnalyticsGranularity;
  bucket: Date;
  viewer_id: string;
}

/** Email digest settings and the sender's progress per user (migration 0015, src/email/). */
export interface EmailDigestSettingsTable {
  user_id: string;
  email_address: Generated<string>;
  /** 1 OFF, 2 HOURLY, 3 DAILY. */
  frequency: number;
  last_sent_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** Items created at or before this were considered by a digest already (never emailed again). */
  covered_until: Timestamp;
  lease_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  lease_token: ColumnType<string | null, string | null | undefined, string | null>;
  updated_at: Timestamp;
}

export interface ConnectionNodesTable {
  node_id: string;
  started_at: Timestamp;
  heartbeat_at: Timestamp;
}

export interface ConnectionsTable {
  session_id: string;
  user_id: string;
  node_id: string;
  device_id: string;
  protocol: string;
  client_version: string;
  user_agent: string;
  connected_at: Date;
}

export interface Database {
  users: UsersTable;
  conversations: ConversationsTable;
  direct_pairs: DirectPairsTable;
  conversation_members: ConversationMembersTable;
  messages: MessagesTable;
  event_log: EventLogTable;
  event_log_partitions: EventLogPartitionsTable;
  event_relay_checkpoints: EventRelayCheckpointsTable;
  events: EventsTable;
  message_reactions: MessageReactionsTable;
  message_reaction_counts: MessageReactionCountsTable;
  message_edits: MessageEditsTable;
  moderation_log: ModerationLogTable;
  notifications: NotificationsTable;
  notification_settings: NotificationSettingsTable;
  follows: FollowsTable;
  close_friends: CloseFriendsTable;
  blocks: BlocksTable;
  media: MediaTable;
  stories: StoriesTable;
  story_views: StoryViewsTable;
  story_tray: StoryTrayTable;
  story_tray_views: StoryTrayViewsTable;
  story_reactions: StoryReactionsTable;
  story_reaction_counts: StoryReactionCountsTable;
  devices: DevicesTable;
  device_prekeys: DevicePrekeysTable;
  to_device_messages: ToDeviceMessagesTable;
  message_blind_tokens: MessageBlindTokensTable;
  reports: ReportsTable;
  account_restrictions: AccountRestrictionsTable;
  audit_log: AuditLogTable;
  account_erasures: AccountErasuresTable;
  jobs: JobsTable;
  job_chunks: JobChunksTable;
  analytics_watermarks: AnalyticsWatermarksTable;
  analytics_conversation_buckets: AnalyticsConversationBucketsTable;
  analytics_conversation_senders: AnalyticsConversationSendersTable;
  analytics_reaction_marks: AnalyticsReactionMarksTable;
  analytics_author_buckets: AnalyticsAuthorBucketsTable;
  analytics_story_viewers: AnalyticsStoryViewersTable;
  email_digest_settings: EmailDigestSettingsTable;
  connection_nodes: ConnectionNodesTable;
  connections: ConnectionsTable;
}
