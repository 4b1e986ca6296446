// Generated from schemas/json/debug.alloc.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Allocates, touches and keeps `mb` MiB.
 */
export interface DebugAllocResult {
  /**
   * MiB held by `debug/alloc` in total.
   */
  heldMb: number;
}
