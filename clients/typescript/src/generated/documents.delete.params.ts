// Generated from schemas/json/documents.delete.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Deletes documents by path (a file or a folder) and/or documentId.
 */
export interface DocumentsDeleteParams {
  /**
   * A file, or a folder (every document under it).
   */
  path?: string | null;
  /**
   * A document id from `documents/ingest` or a search hit.
   */
  documentId?: string | null;
  /**
   * Collection (default `"default"`).
   */
  collection?: string | null;
}
