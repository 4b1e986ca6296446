// Generated from schemas/json/documents.ingest.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Indexes one file (or given content), idempotently by content hash.
 */
export interface DocumentsIngestResult {
  /**
   * Stable id of the document (from its absolute path).
   */
  documentId: string;
  /**
   * Absolute path.
   */
  path: string;
  /**
   * Chunks the document has now.
   */
  chunks: number;
  /**
   * True when the content hash was unchanged and nothing was written.
   */
  unchanged: boolean;
  /**
   * What was left out of a document indexed only in part (a limit reached, a
   * damaged file); absent when it is whole.
   */
  partial?: string | null;
}
