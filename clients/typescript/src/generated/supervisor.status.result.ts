// Generated from schemas/json/supervisor.status.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Answered by `quarry supervise` itself: state, child pid, restarts, uptime, how the last child ended, garbage lines.
 */
export interface SupervisorStatusResult {
  /**
   * State.
   */
  state: "starting" | "ready" | "restarting" | "gave_up" | "stopping" | "stopped";
  /**
   * Current child's pid.
   */
  pid?: number | null;
  /**
   * Restarts so far.
   */
  restarts: number;
  /**
   * Current child's uptime, ms.
   */
  uptimeMs?: number | null;
  /**
   * How the last child ended.
   */
  lastExit?: ExitInfo | null;
  /**
   * Lines on the child's stdout that were not protocol messages.
   */
  garbageLines: number;
}
/**
 * How the last child ended (`lastExit` in `supervisor/status`; the same names as
 * `supervisor/event` and the `sidecar_exited` error data, PROTOCOL.md §10).
 */
export interface ExitInfo {
  /**
   * Exit code, if it exited.
   */
  exitCode?: number | null;
  /**
   * Terminating signal, if killed.
   */
  signal?: number | null;
  /**
   * Why.
   */
  reason: string;
}
