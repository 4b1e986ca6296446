// Generated from schemas/json/collections.create.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Creates a collection (no-op if it exists).
 */
export interface CollectionsCreateResult {
  /**
   * The name.
   */
  name: string;
  /**
   * False when it already existed.
   */
  created: boolean;
}
