// Generated from schemas/json/debug.sleep.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Sleeps `ms` milliseconds; one progress notification per 10 ms slept.
 */
export interface DebugSleepResult {
  /**
   * Milliseconds slept.
   */
  slept: number;
}
