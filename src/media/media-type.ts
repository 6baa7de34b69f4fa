/**
 * Media type detection from the bytes themselves (magic numbers), never from what the client
 * claims: a story is shown to other people, so only the formats we accept may get in.
 */
import { MediaType } from "../../gen/parley/v1/media_pb.ts";

/** The MIME type of each accepted type. */
export const CONTENT_TYPES: ReadonlyMap<MediaType, string> = new Map([
  [MediaType.JPEG, "image/jpeg"],
  [MediaType.PNG, "image/png"],
  [MediaType.GIF, "image/gif"],
  [MediaType.WEBP, "image/webp"],
  [MediaType.MP4, "video/mp4"],
  [MediaType.QUICKTIME, "video/quicktime"],
]);

/** ISO base media major brands that mean an MP4 video (ISO 14496-12/-14, Apple M4V, DASH). */
const MP4_BRANDS = new Set(["isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso7", "iso8", "iso9", "mp41", "mp42", "mp71", "avc1", "dash", "M4V ", "M4VH", "M4VP", "mmp4", "msnv", "f4v "]);
/** Top-level atoms a QuickTime file without an `ftyp` box (the original MOV layout) starts with. */
const QUICKTIME_LEADING_ATOMS = new Set(["moov", "mdat", "wide", "pnot"]);

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** JPEG markers that may follow SOI: APPn, DQT, SOFn, DHT, DRI, COM. */
const JPEG_FIRST_MARKERS = new Set([...range(0xe0, 0xef), 0xdb, ...range(0xc0, 0xcf), 0xdd, 0xfe]);
const WEBP_CHUNKS = new Set(["VP8 ", "VP8L", "VP8X"]);

/**
 * The type of the file, or null when it is none of the accepted ones. Beyond the magic
 * number, the first structure after it must be well-formed, so a signature glued onto
 * something else (an HTML page after "GIF89a") is refused: served back, it could be sniffed
 * as HTML by a careless client.
 */
export function detectMediaType(bytes: Uint8Array): MediaType | null {
  if (isJpeg(bytes)) return MediaType.JPEG;
  if (isPng(bytes)) return MediaType.PNG;
  if (isGif(bytes)) return MediaType.GIF;
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 4) === "WEBP" && WEBP_CHUNKS.has(ascii(bytes, 12, 4))) return MediaType.WEBP;
  return detectIsoMedia(bytes);
}

/** SOI, then a known marker whose segment length fits in the file. */
function isJpeg(bytes: Uint8Array): boolean {
  if (!startsWith(bytes, [0xff, 0xd8, 0xff]) || bytes.length < 6 || !JPEG_FIRST_MARKERS.has(bytes[3]!)) return false;
  const segmentLength = (bytes[4]! << 8) | bytes[5]!;
  return segmentLength >= 2 && 4 + segmentLength <= bytes.length;
}

/** The signature, then the 13-byte IHDR chunk every PNG starts with. */
function isPng(bytes: Uint8Array): boolean {
  return startsWith(bytes, PNG_SIGNATURE) && startsWith(bytes.subarray(8), [0, 0, 0, 13]) && ascii(bytes, 12, 4) === "IHDR";
}

/** Header, logical screen descriptor, optional global colour table, then an extension, image or trailer. */
function isGif(bytes: Uint8Array): boolean {
  const header = ascii(bytes, 0, 6);
  if ((header !== "GIF87a" && header !== "GIF89a") || bytes.length < 14) return false;
  const packed = bytes[10]!;
  const colourTable = packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0;
  return [0x21, 0x2c, 0x3b].includes(bytes[13 + colourTable] ?? -1);
}

/** MP4 and QuickTime share the ISO base media layout: [size:4][type:4]… boxes. */
function detectIsoMedia(bytes: Uint8Array): MediaType | null {
  if (bytes.length < 12) return null;
  const boxSize = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  const boxType = ascii(bytes, 4, 4);
  if (boxType === "ftyp") {
    if (boxSize < 16 || boxSize > bytes.length) return null;
    const brand = ascii(bytes, 8, 4);
    if (brand === "qt  ") return MediaType.QUICKTIME;
    return MP4_BRANDS.has(brand) ? MediaType.MP4 : null;
  }
  return boxSize >= 8 && QUICKTIME_LEADING_ATOMS.has(boxType) ? MediaType.QUICKTIME : null;
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((b, i) => bytes[i] === b);
}

function ascii(bytes: Uint8Array, offset: number, length: number): string {
  if (bytes.length < offset + length) return "";
  return String.fromCharCode(...bytes.subarray(offset, offset + length));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
