// Generated from schemas/json/health.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Status, uptime, load and memory of the serving process; never queued.
 */
export interface HealthParams {}
