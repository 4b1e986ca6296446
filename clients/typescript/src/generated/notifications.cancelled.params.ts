// Generated from schemas/json/notifications.cancelled.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Cancels a queued or running request (MCP).
 */
export interface NotificationsCancelledParams {
  /**
   * Id of the request to cancel.
   */
  requestId: string | number;
  /**
   * Why, for logs.
   */
  reason?: string | null;
}
