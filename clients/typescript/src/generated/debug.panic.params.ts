// Generated from schemas/json/debug.panic.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Panics inside the handler; answered -32603.
 */
export interface DebugPanicParams {}
