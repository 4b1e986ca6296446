// Generated from schemas/json/$.cancelRequest.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Alias of notifications/cancelled (LSP).
 */
export interface CancelRequestParams {
  /**
   * Id of the request to cancel.
   */
  id: string | number;
}
