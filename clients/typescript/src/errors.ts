/**
 * Typed errors: one class per protocol `data.kind` (PROTOCOL.md §8, §10), all
 * subclasses of {@link QuarryError}, plus {@link ConnectionClosedError} when the sidecar
 * process is gone.
 */

/** A JSON-RPC error answered by the sidecar (or the supervisor in front of it). */
export class QuarryError extends Error {
  /** JSON-RPC error code (`-32602`, `-32010`, …). */
  readonly code: number;
  /** `data.kind`: the protocol's name for the error, for programs. */
  readonly kind: string;
  /** The whole `data` object (`timeoutMs`, `stage`, `reason`, `retryable`, …). */
  readonly data: Record<string, unknown>;

  constructor(code: number, message: string, data: Record<string, unknown> = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.kind = typeof data.kind === "string" ? data.kind : "unknown";
    this.data = data;
  }
}

/** `-32700` `parse_error`. */
export class ParseError extends QuarryError {}
/** `-32600` `invalid_request` (and `message_too_large`, `duplicate_id`). */
export class InvalidRequestError extends QuarryError {}
/** `-32601` `method_not_found`. */
export class MethodNotFoundError extends QuarryError {}
/** `-32602` `invalid_params`; `data.field` names the parameter when known. */
export class InvalidParamsError extends QuarryError {}
/** `-32603` `internal` (a handler panicked; the sidecar goes on). */
export class InternalError extends QuarryError {}
/** `-32001` `timeout`: the deadline passed (`data.stage`: `queued` or `running`, or
 * `client` when the sidecar did not answer in time either). */
export class QuarryTimeoutError extends QuarryError {}
/** `-32002` `overloaded`: the queue was full (`data.queueLimit`); retry later. */
export class OverloadedError extends QuarryError {}
/** `-32003` `shutting_down`. */
export class ShuttingDownError extends QuarryError {}
/** `-32004` `sidecar_exited`: the sidecar died with this request in flight (through a
 * supervisor; `data.exitCode` / `data.signal`). */
export class SidecarExitedError extends QuarryError {}
/** `-32005` `sidecar_unavailable`: the supervisor gave up restarting. */
export class SidecarUnavailableError extends QuarryError {}
/** `-32800` `cancelled` (also what an aborted call rejects with). */
export class CancelledError extends QuarryError {}
/** `-32010` `not_found`. */
export class NotFoundError extends QuarryError {}
/** `-32011` `invalid_path`. */
export class InvalidPathError extends QuarryError {}
/** `-32012` `unsupported_content`. */
export class UnsupportedContentError extends QuarryError {}
/** `-32013` `storage` (`data.reason`, `data.retryable`). */
export class StorageError extends QuarryError {}
/** The sidecar process exited or its pipes closed: pending calls reject with this. */
export class ConnectionClosedError extends QuarryError {}

const BY_KIND: Record<string, new (code: number, message: string, data?: Record<string, unknown>) => QuarryError> = {
  parse_error: ParseError,
  invalid_request: InvalidRequestError,
  message_too_large: InvalidRequestError,
  duplicate_id: InvalidRequestError,
  method_not_found: MethodNotFoundError,
  invalid_params: InvalidParamsError,
  internal: InternalError,
  timeout: QuarryTimeoutError,
  overloaded: OverloadedError,
  shutting_down: ShuttingDownError,
  sidecar_exited: SidecarExitedError,
  sidecar_unavailable: SidecarUnavailableError,
  cancelled: CancelledError,
  not_found: NotFoundError,
  invalid_path: InvalidPathError,
  unsupported_content: UnsupportedContentError,
  storage: StorageError,
};

const BY_CODE: Record<number, string> = {
  [-32700]: "parse_error",
  [-32600]: "invalid_request",
  [-32601]: "method_not_found",
  [-32602]: "invalid_params",
  [-32603]: "internal",
  [-32001]: "timeout",
  [-32002]: "overloaded",
  [-32003]: "shutting_down",
  [-32004]: "sidecar_exited",
  [-32005]: "sidecar_unavailable",
  [-32800]: "cancelled",
  [-32010]: "not_found",
  [-32011]: "invalid_path",
  [-32012]: "unsupported_content",
  [-32013]: "storage",
};

/** The typed error for a JSON-RPC `error` object: by `data.kind`, else by code. */
export function errorFrom(error: { code: number; message: string; data?: unknown }): QuarryError {
  const data = (typeof error.data === "object" && error.data !== null ? error.data : {}) as Record<string, unknown>;
  const kind = typeof data.kind === "string" ? data.kind : BY_CODE[error.code];
  const Class = (kind && BY_KIND[kind]) || QuarryError;
  return new Class(error.code, error.message, kind && !data.kind ? { ...data, kind } : data);
}
