// Generated from schemas/json/notifications.progress.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Progress of a request that carried `_meta.progressToken`; written before its response.
 */
export interface NotificationsProgressParams {
  /**
   * The request's `_meta.progressToken`.
   */
  progressToken: string | number;
  /**
   * Increases with each notification.
   */
  progress: number;
  /**
   * Expected final value, when known.
   */
  total?: number | null;
  /**
   * What is happening, for people.
   */
  message?: string | null;
}
