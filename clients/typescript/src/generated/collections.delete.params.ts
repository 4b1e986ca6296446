// Generated from schemas/json/collections.delete.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Deletes a collection and everything in it.
 */
export interface CollectionsDeleteParams {
  /**
   * Collection name: 1–64 letters, digits, `_` or `-`.
   */
  name: string;
}
