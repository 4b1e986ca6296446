// Generated from schemas/json/debug.echo.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Returns its params (without `_meta`).
 */
export interface DebugEchoParams {}
