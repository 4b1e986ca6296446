// Generated from schemas/json/watch.start.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Reconciles a folder with the index (progress), then keeps it in step; sends watch/event after each applied change.
 */
export interface WatchStartParams {
  /**
   * The folder to watch (absolute or relative to the server's working directory).
   */
  root: string;
  /**
   * Collection (default `"default"`).
   */
  collection?: string | null;
  /**
   * Only files matching one of these globs.
   */
  include?: string[] | null;
  /**
   * Not the files matching one of these globs.
   */
  exclude?: string[] | null;
  /**
   * Quiet time in ms before a burst of changes is applied (default 200, 10–60000).
   */
  debounceMs?: number | null;
  /**
   * Run under this id instead of a fresh one: a follower re-arming its host's watch
   * on a new owner after a takeover (GRPC.md §6). `invalid_params` if it is in use.
   */
  watchId?: string | null;
}
