/**
 * The compressions the server accepts and replies with, for connect-node and the lean gRPC path
 * alike (the same list, so both send the same bytes).
 *
 * Why not connect-node's compressionGzip: it runs zlib's default level (6) in the thread pool.
 * For a 10 KiB page of conversations that cost ~0.2 ms of CPU plus a round trip through the
 * pool on every call, more than any other single step of a ListConversations call. Level 1 on
 * the calling thread takes ~30–50 µs for such a page and the output is within ~1 % of level 6's
 * size on chat text. Larger replies still go to the pool, so one call never holds the event
 * loop for long. Requests are decompressed exactly as before.
 */
import { promisify } from "node:util";
import zlib from "node:zlib";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Compression } from "@connectrpc/connect/protocol";

/** Replies up to this size are gzipped on the calling thread (~0.2 ms at most at level 1). */
const SYNC_GZIP_MAX_BYTES = 64 * 1024;
const GZIP_OPTIONS: zlib.ZlibOptions = { level: 1 };
const gzipInPool = promisify(zlib.gzip);

/** gzip at level 1: small replies in place, large ones in the thread pool. */
export const fastGzip: Compression = {
  name: compressionGzip.name,
  compress: (bytes) => (bytes.length <= SYNC_GZIP_MAX_BYTES ? Promise.resolve(zlib.gzipSync(bytes, GZIP_OPTIONS)) : gzipInPool(bytes, GZIP_OPTIONS)),
  decompress: compressionGzip.decompress,
};

/** In order of preference, as connect-node's default list. */
export const REPLY_COMPRESSIONS: Compression[] = [fastGzip, compressionBrotli];
