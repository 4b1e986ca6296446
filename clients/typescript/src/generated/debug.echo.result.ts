// Generated from schemas/json/debug.echo.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Returns its params (without `_meta`).
 */
export interface DebugEchoResult {}
