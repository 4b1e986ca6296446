// Generated from schemas/json/watch.list.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * The running watches.
 */
export interface WatchListParams {}
