// Generated from schemas/json/watch.stop.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Stops a watch.
 */
export interface WatchStopParams {
  /**
   * The watch.
   */
  watchId: string;
}
