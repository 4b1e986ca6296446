// Generated from schemas/json/supervisor.status.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Answered by `quarry supervise` itself: state, child pid, restarts, uptime, how the last child ended, garbage lines.
 */
export interface SupervisorStatusParams {}
