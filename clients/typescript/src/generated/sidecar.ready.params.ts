// Generated from schemas/json/sidecar.ready.params.json by scripts/gen-types.mjs. Do not edit.

/**
 * Sent once when the server is ready to serve.
 */
export interface SidecarReadyParams {
  /**
   * Always 1.
   */
  protocolVersion: number;
  /**
   * The server's version.
   */
  version: string;
  /**
   * The serving process's pid.
   */
  pid: number;
  /**
   * Every method the server answers, sorted.
   */
  methods: string[];
  /**
   * The process's local gRPC endpoint (GRPC.md §4), `unix:` and the socket's path;
   * absent when it serves none.
   */
  endpoint?: string | null;
}
