// Generated from schemas/json/debug.exit.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Exits the process at once with `code` (a crash).
 */
export interface DebugExitResult {}
