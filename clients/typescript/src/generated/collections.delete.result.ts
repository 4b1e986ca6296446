// Generated from schemas/json/collections.delete.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Deletes a collection and everything in it.
 */
export interface CollectionsDeleteResult {
  /**
   * The name.
   */
  name: string;
  /**
   * False when it did not exist.
   */
  deleted: boolean;
}
