/**
 * Files for encrypted conversations: sealed on the device under a fresh key, uploaded as an
 * opaque attachment of the conversation (only its members may download it), and opened again
 * with the MediaKey that travelled inside the message. The server sees a blob and its size.
 */
import type { Client } from "@connectrpc/connect";
import type { MediaKey } from "../../gen/parley/e2e/v1/payload_pb.ts";
import type { MediaService } from "../../gen/parley/v1/media_service_pb.ts";
import { decryptMedia, encryptMedia, ENCRYPTED_MEDIA_CONTENT_TYPE, type MediaDescription } from "./crypto/index.ts";

export class Attachments {
  readonly #media: Client<typeof MediaService>;

  constructor(media: Client<typeof MediaService>) {
    this.#media = media;
  }

  /** Seals and uploads a file; pass the returned key in SendOptions.media. */
  async upload(conversationId: string, file: Uint8Array, description: MediaDescription): Promise<MediaKey> {
    const { ciphertext, mediaKey } = encryptMedia(file, description);
    const { media } = await this.#media.uploadMedia({ data: ciphertext, contentType: ENCRYPTED_MEDIA_CONTENT_TYPE, conversationId });
    if (!media) throw new Error("UploadMedia answered without the stored media");
    mediaKey.mediaId = media.id;
    return mediaKey;
  }

  /** Downloads and opens a file a message carried; DecryptError when it was altered. */
  async download(mediaKey: MediaKey): Promise<Uint8Array> {
    const { data } = await this.#media.downloadMedia({ mediaId: mediaKey.mediaId });
    return decryptMedia(data, mediaKey);
  }
}
