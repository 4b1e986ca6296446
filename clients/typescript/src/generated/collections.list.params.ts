// Generated from schemas/json/collections.list.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Every collection with its chunk (`points`) and document counts.
 */
export interface CollectionsListParams {}
