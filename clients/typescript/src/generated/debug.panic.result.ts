// Generated from schemas/json/debug.panic.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Panics inside the handler; answered -32603.
 */
export interface DebugPanicResult {}
