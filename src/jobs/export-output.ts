/** The output of an export: the parts joined as JSON Lines, or zipped with the media they refer to. */
import { ExportFormat } from "../../gen/parley/v1/job_pb.ts";
import type { BlobStore } from "../media/index.ts";
import type { JobFiles, ZipMedia } from "./job-files.ts";
import type { OutputFile } from "./job-kind.ts";
import type { JobRow } from "./job-repository.ts";

export const JSONL_TYPE = "application/x-ndjson";
export const ZIP_TYPE = "application/zip";

export async function assembleExport(files: JobFiles, job: JobRow, chunks: number, baseName: string, media: () => AsyncIterable<ZipMedia>): Promise<OutputFile> {
  const jsonlName = `${baseName}.jsonl`;
  if (job.format !== ExportFormat.ZIP) {
    return { name: jsonlName, type: JSONL_TYPE, ...(await files.assembleJsonl(job.id, chunks)) };
  }
  return { name: `${baseName}.zip`, type: ZIP_TYPE, ...(await files.assembleZip(job.id, chunks, jsonlName, media(), job.created_at)) };
}

/** The bytes of each media id found in the store, as `media/<id>` entries (a missing file is skipped). */
export async function* mediaEntries(blobs: BlobStore, ids: readonly string[]): AsyncGenerator<ZipMedia> {
  for (const id of ids) {
    const data = await blobs.get(id);
    if (data) yield { name: `media/${id}`, data };
  }
}

/** An encrypted body as the export writes it: base64, never decrypted. */
export function envelopeRecord(row: {
  envelope_ciphertext: Uint8Array | null;
  envelope_nonce: Uint8Array | null;
  envelope_algorithm: string | null;
  envelope_key_id: string | null;
  envelope_key_epoch: string | number | null;
}): Record<string, unknown> | undefined {
  if (row.envelope_ciphertext === null) return undefined;
  return {
    ciphertext: Buffer.from(row.envelope_ciphertext).toString("base64"),
    nonce: Buffer.from(row.envelope_nonce ?? new Uint8Array()).toString("base64"),
    algorithm: row.envelope_algorithm,
    key_id: row.envelope_key_id,
    key_epoch: Number(row.envelope_key_epoch ?? 0),
  };
}
