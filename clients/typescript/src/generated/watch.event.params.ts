// Generated from schemas/json/watch.event.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * A change under a watched folder, sent after the index applied it.
 */
export interface WatchEventParams {
  /**
   * The watch.
   */
  watchId: string;
  /**
   * Absolute path of the file (or of the root, when it was deleted).
   */
  path: string;
  /**
   * What happened.
   */
  kind: "created" | "modified" | "deleted" | "renamed";
  /**
   * Whether the index now reflects it.
   */
  indexed: boolean;
  /**
   * Why not, when `indexed` is false; with `indexed` true, what was left out of a
   * document indexed only in part (`partly indexed: …`).
   */
  error?: string | null;
}
