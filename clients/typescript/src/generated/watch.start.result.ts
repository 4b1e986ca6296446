// Generated from schemas/json/watch.start.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Reconciles a folder with the index (progress), then keeps it in step; sends watch/event after each applied change.
 */
export interface WatchStartResult {
  /**
   * Id for `watch/stop` and in every `watch/event`.
   */
  watchId: string;
  /**
   * The root as watched: absolute, lexically normalised, symlinks not resolved (the
   * `path` of the event that reports its deletion).
   */
  root: string;
  /**
   * The collection.
   */
  collection: string;
}
