// Generated from schemas/json/collections.create.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Creates a collection (no-op if it exists).
 */
export interface CollectionsCreateParams {
  /**
   * Collection name: 1–64 letters, digits, `_` or `-`.
   */
  name: string;
}
