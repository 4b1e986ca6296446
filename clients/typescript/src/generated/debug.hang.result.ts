// Generated from schemas/json/debug.hang.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Stops reading and answering anything for 10 minutes (a hang).
 */
export interface DebugHangResult {}
