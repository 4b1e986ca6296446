// Generated from schemas/json/supervisor.event.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Sent by `quarry supervise`: a child started, became ready, missed a health check, exited, is restarted, went over a limit; the supervisor gave up or stopped.
 */
export interface SupervisorEventParams {
  /**
   * What happened.
   */
  event: "started" | "ready" | "unhealthy" | "exited" | "restarting" | "limit_exceeded" | "gave_up" | "stopped";
  /**
   * The child's pid.
   */
  pid?: number | null;
  /**
   * Exit code.
   */
  exitCode?: number | null;
  /**
   * Terminating signal.
   */
  signal?: number | null;
  /**
   * Restart number since the last backoff reset.
   */
  attempt?: number | null;
  /**
   * Delay before the restart, ms.
   */
  delayMs?: number | null;
  /**
   * Why, for people.
   */
  reason?: string | null;
  /**
   * Resident memory, bytes.
   */
  rssBytes?: number | null;
  /**
   * Milliseconds since the supervisor was created.
   */
  atMs: number;
}
