export { createFileBlobStore, type BlobStore } from "./blob-store.ts";
export { MediaService, type MediaAudienceCheck, type MediaServiceOptions } from "./media-service.ts";
export { detectMediaType, CONTENT_TYPES } from "./media-type.ts";
export { deleteMedia, findMedia, type MediaRow } from "./media-repository.ts";
export { toMedia } from "./media-mapper.ts";
export { ClamdClient, ClamdError, parseClamdUrl, formatClamdAddress, type ClamdAddress, type ScanVerdict } from "./clamd-client.ts";
export {
  createMalwareScanMetrics,
  createMalwareScanner,
  logClamdReachability,
  MALWARE_DETECTED,
  MALWARE_SCAN_TOO_LARGE,
  MALWARE_SCAN_UNAVAILABLE,
  type MalwareScanner,
} from "./malware-scan.ts";
