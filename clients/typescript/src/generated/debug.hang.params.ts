// Generated from schemas/json/debug.hang.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Stops reading and answering anything for 10 minutes (a hang).
 */
export interface DebugHangParams {}
