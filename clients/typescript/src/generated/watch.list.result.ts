// Generated from schemas/json/watch.list.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * The running watches.
 */
export interface WatchListResult {
  /**
   * Running watches.
   */
  watches: WatchInfo[];
}
/**
 * One running watch, as `watch/list` shows it.
 */
export interface WatchInfo {
  /**
   * Id.
   */
  watchId: string;
  /**
   * Absolute root folder.
   */
  root: string;
  /**
   * Collection.
   */
  collection: string;
}
