// Generated from schemas/json/watch.stop.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Stops a watch.
 */
export interface WatchStopResult {
  /**
   * False when no such watch was running.
   */
  stopped: boolean;
}
