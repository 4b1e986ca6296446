// Generated from schemas/json/documents.delete.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Deletes documents by path (a file or a folder) and/or documentId.
 */
export interface DocumentsDeleteResult {
  /**
   * Documents deleted.
   */
  deleted: number;
}
