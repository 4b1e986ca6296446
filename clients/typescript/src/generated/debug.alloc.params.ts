// Generated from schemas/json/debug.alloc.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Allocates, touches and keeps `mb` MiB.
 */
export interface DebugAllocParams {
  /**
   * MiB to allocate, touch and keep.
   */
  mb: number;
}
