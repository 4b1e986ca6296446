// Generated from schemas/json/debug.sleep.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Sleeps `ms` milliseconds; one progress notification per 10 ms slept.
 */
export interface DebugSleepParams {
  /**
   * Milliseconds to sleep.
   */
  ms: number;
}
