/**
 * Media type detection from magic bytes, on real small files of each type (the tester's
 * fixtures) and on files that lie about what they are.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { MediaType } from "../../gen/parley/v1/media_pb.ts";
import { detectMediaType } from "../../src/media/index.ts";

const FIXTURES = new URL("../stories/fixtures/", import.meta.url);
const fixture = async (name: string) => new Uint8Array(await readFile(new URL(name, FIXTURES)));
const ascii = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

/** An ISO BMFF file that starts with an `ftyp` box of the given major brand. */
function ftyp(brand: string): Uint8Array {
  const box = Buffer.alloc(24);
  box.writeUInt32BE(24, 0);
  box.write("ftyp", 4, "latin1");
  box.write(brand, 8, "latin1");
  box.write("isom", 16, "latin1");
  return new Uint8Array(box);
}

describe("media type detection", () => {
  for (const [file, type] of [
    ["pixel.jpg", MediaType.JPEG],
    ["pixel.png", MediaType.PNG],
    ["pixel.gif", MediaType.GIF],
    ["pixel.webp", MediaType.WEBP],
    ["clip.mp4", MediaType.MP4],
    ["clip.mov", MediaType.QUICKTIME],
  ] as const) {
    it(`recognises ${file}`, async () => assert.equal(detectMediaType(await fixture(file)), type));
  }

  for (const file of ["notes.txt", "page.html.jpg", "random.bin", "document.pdf", "image.heic"]) {
    it(`refuses ${file}`, async () => assert.equal(detectMediaType(await fixture(file)), null));
  }

  it("tells MP4 and QuickTime apart by the ftyp brand, and refuses other ISO media brands", () => {
    assert.equal(detectMediaType(ftyp("mp42")), MediaType.MP4);
    assert.equal(detectMediaType(ftyp("qt  ")), MediaType.QUICKTIME);
    assert.equal(detectMediaType(ftyp("heic")), null, "HEIF image");
    assert.equal(detectMediaType(ftyp("M4A ")), null, "audio only");
  });

  it("refuses truncated signatures and lookalikes", () => {
    assert.equal(detectMediaType(new Uint8Array()), null);
    assert.equal(detectMediaType(new Uint8Array([0xff, 0xd8])), null, "two bytes of a JPEG");
    assert.equal(detectMediaType(new Uint8Array([0x89, 0x50, 0x4e, 0x47])), null, "half a PNG signature");
    assert.equal(detectMediaType(ascii("GIF88a")), null);
    assert.equal(detectMediaType(ascii("RIFF\0\0\0\0WAVEfmt ")), null, "a WAV file");
    assert.equal(detectMediaType(ascii("RIFF\0\0\0\0WEBPXXXX")), null, "a RIFF/WEBP header without a VP8 chunk");
  });

  it("refuses a signature glued onto a web page", () => {
    const page = "<html><script>alert(1)</script></html>";
    assert.equal(detectMediaType(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...ascii(page)])), null, "PNG");
    assert.equal(detectMediaType(ascii(`GIF89a${page}`)), null, "GIF");
    assert.equal(detectMediaType(new Uint8Array([0xff, 0xd8, 0xff, ...ascii(page)])), null, "JPEG");
    assert.equal(detectMediaType(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x7f, 0xff, ...ascii(page)])), null, "JPEG whose first segment overruns the file");
  });
});
