// Generated from schemas/json/stats.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Request counters and latency percentiles per method, queue figures, memory.
 */
export interface StatsParams {}
