/**
 * MediaService: uploads (type detected from the bytes, size bounded) and downloads. Who may
 * read a media object that is not theirs is the stories' business (the privacy of the story
 * that shows it), so that check comes in as a function; an encrypted conversation's
 * attachment is its current members'.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import {
  DownloadMediaResponseSchema,
  GetMediaResponseSchema,
  UploadMediaResponseSchema,
  type DownloadMediaRequest,
  type GetMediaRequest,
  type MediaService as MediaServiceDesc,
  type UploadMediaRequest,
} from "../../gen/parley/v1/media_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import type { Database } from "../db/schema.ts";
import { InvalidInputError, NotFoundError } from "../errors.ts";
import { newId } from "../ids.ts";
import { requireUuid } from "../validation.ts";
import type { BlobStore } from "./blob-store.ts";
import { toMedia } from "./media-mapper.ts";
import { findMedia, insertMedia, type MediaRow } from "./media-repository.ts";
import { CONTENT_TYPES, detectMediaType } from "./media-type.ts";
import { MediaType } from "../../gen/parley/v1/media_pb.ts";
import { findMemberConversationEncryption, findMemberRetention } from "../conversations/conversation-repository.ts";
import { RetentionPolicy } from "../retention/retention-policy.ts";
import type { MalwareScanner } from "./malware-scan.ts";

/** What an encrypted attachment is, to anyone but the members' devices. */
const ENCRYPTED_CONTENT_TYPE = "application/octet-stream";

/** Whether a user may read a media object they do not own. */
export type MediaAudienceCheck = (viewerId: string, media: MediaRow, now: Date) => Promise<boolean>;

export interface MediaServiceOptions {
  db: Kysely<Database>;
  blobs: BlobStore;
  maxBytes: number;
  /** Decides for everyone but the owner, and for the owner too once the media's story is gone. */
  mayRead: MediaAudienceCheck;
  /**
   * Checks plain uploads for malware before they are stored; null when CLAMD_URL is unset.
   * Encrypted attachments are not scanned: they are ciphertext, in which no signature can match.
   */
  scanner?: MalwareScanner | null;
  /** The deployment's retention: an attachment past its conversation's retention is gone. None by default. */
  retention?: RetentionPolicy;
}

export class MediaService implements ServiceImpl<typeof MediaServiceDesc> {
  readonly #options: MediaServiceOptions;

  constructor(options: MediaServiceOptions) {
    this.#options = options;
  }

  async uploadMedia(req: UploadMediaRequest, ctx: HandlerContext) {
    const { userId } = requireCaller(ctx);
    const { data } = req;
    if (data.length === 0) throw new InvalidInputError("data", "must not be empty");
    if (data.length > this.#options.maxBytes) throw new InvalidInputError("data", `is ${data.length} bytes; the limit is ${this.#options.maxBytes}`);
    if (req.conversationId !== "") return this.#uploadAttachment(req, userId);
    const type = detectMediaType(data);
    const contentType = type === null ? undefined : CONTENT_TYPES.get(type);
    if (type === null || contentType === undefined) {
      throw new InvalidInputError("data", "is not a JPEG, PNG, GIF, WebP, MP4 or QuickTime file");
    }
    if (req.contentType !== "" && req.contentType.trim().toLowerCase() !== contentType) {
      throw new InvalidInputError("content_type", `says ${req.contentType} but the data is ${contentType}`);
    }
    // Last, once the cheap checks passed, and before anything is written.
    await this.#options.scanner?.check(data, { userId, contentType }, ctx.signal);
    return this.#store(data, { owner_id: userId, type, content_type: contentType, conversation_id: null });
  }

  /**
   * An attachment sealed on the client for an encrypted conversation: the server cannot look
   * inside, so it stores the bytes as they came and lets the conversation's members read them.
   */
  async #uploadAttachment(req: UploadMediaRequest, userId: string) {
    const conversationId = requireUuid("conversation_id", req.conversationId);
    const conversation = await findMemberConversationEncryption(this.#options.db, conversationId, userId);
    if (!conversation) throw new NotFoundError("conversation");
    if (!conversation.encrypted) throw new InvalidInputError("conversation_id", "is not an encrypted conversation: attachments are sealed on the client");
    if (req.contentType !== "" && req.contentType.trim().toLowerCase() !== ENCRYPTED_CONTENT_TYPE) {
      throw new InvalidInputError("content_type", `must be empty or ${ENCRYPTED_CONTENT_TYPE} for an encrypted attachment`);
    }
    return this.#store(req.data, { owner_id: userId, type: MediaType.ENCRYPTED, content_type: ENCRYPTED_CONTENT_TYPE, conversation_id: conversationId });
  }

  async #store(data: Uint8Array, media: Pick<MediaRow, "owner_id" | "type" | "content_type" | "conversation_id">) {
    const id = newId();
    // Bytes first: a row never points at a missing file. A file whose row insert failed is
    // unreachable garbage, which is the cheaper failure.
    await this.#options.blobs.put(id, data);
    const row = await insertMedia(this.#options.db, { id, ...media, size_bytes: data.length, created_at: new Date() });
    return create(UploadMediaResponseSchema, { media: toMedia(row) });
  }

  async getMedia(req: GetMediaRequest, ctx: HandlerContext) {
    const row = await this.#readable(req.mediaId, ctx);
    return create(GetMediaResponseSchema, { media: toMedia(row) });
  }

  async downloadMedia(req: DownloadMediaRequest, ctx: HandlerContext) {
    const row = await this.#readable(req.mediaId, ctx);
    const data = await this.#options.blobs.get(row.id);
    if (data === null) throw new NotFoundError("media"); // deleted with its story a moment ago
    return create(DownloadMediaResponseSchema, { media: toMedia(row), data });
  }

  async #readable(mediaId: string, ctx: HandlerContext): Promise<MediaRow> {
    const { userId } = requireCaller(ctx);
    const row = await findMedia(this.#options.db, requireUuid("media_id", mediaId));
    if (!row || !(await this.#mayRead(userId, row))) throw new NotFoundError("media");
    return row;
  }

  /**
   * An attachment is for its conversation's current members while it is within the
   * conversation's retention (as its messages are); other media, as mayRead decides.
   */
  async #mayRead(userId: string, row: MediaRow): Promise<boolean> {
    if (row.conversation_id === null) return this.#options.mayRead(userId, row, new Date());
    const member = await findMemberRetention(this.#options.db, row.conversation_id, userId);
    const retention = this.#options.retention ?? new RetentionPolicy(null);
    return member !== undefined && retention.at(new Date()).retains(member, row.created_at);
  }
}
