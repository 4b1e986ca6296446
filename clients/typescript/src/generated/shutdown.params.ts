// Generated from schemas/json/shutdown.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Stops taking work, drains within the grace period, answers, exits 0.
 */
export interface ShutdownParams {}
