// Generated from schemas/json/documents.ingest.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Indexes one file (or given content), idempotently by content hash.
 */
export interface DocumentsIngestParams {
  /**
   * The file (absolute or relative to the server's working directory); with
   * `content`, only the document's name.
   */
  path: string;
  /**
   * Collection (default `"default"`, created on first use).
   */
  collection?: string | null;
  /**
   * The text to index instead of reading `path`.
   */
  content?: string | null;
  /**
   * Stored with every chunk of the document.
   */
  metadata?: {
    [k: string]: unknown;
  } | null;
}
