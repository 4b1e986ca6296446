// Generated from schemas/json/ping.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Liveness probe; answers `{}` at once.
 */
export interface PingResult {}
