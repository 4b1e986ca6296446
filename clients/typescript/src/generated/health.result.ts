// Generated from schemas/json/health.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Status, uptime, load and memory of the serving process; never queued.
 */
export interface HealthResult {
  /**
   * `ok` or `degraded`.
   */
  status: "ok" | "degraded";
  /**
   * Milliseconds since start.
   */
  uptimeMs: number;
  /**
   * Requests running now.
   */
  inFlight: number;
  /**
   * Requests waiting in the queue.
   */
  queued: number;
  /**
   * Resident memory of the serving process, bytes.
   */
  rssBytes: number;
  /**
   * The serving process's version.
   */
  version: string;
  /**
   * For a server on a data folder (GRPC.md §6): `owner` (it holds the store) or
   * `follower` (it carries engine methods to the owner); absent before either.
   */
  role?: string | null;
  /**
   * The pid of the data folder's owner (this process's own when it is the owner).
   */
  ownerPid?: number | null;
}
