/**
 * The Quarry stdio client: spawns `quarry serve` (behind `quarry supervise` by default)
 * with piped stdio in its own process group and speaks JSON-RPC 2.0 to it, one JSON
 * value per line (PROTOCOL.md). Every call gets exactly one outcome: its result, a
 * typed {@link QuarryError}, or {@link ConnectionClosedError} if the process is gone.
 */
import { spawn as spawnChild, type ChildProcessWithoutNullStreams } from "node:child_process";
import { EventEmitter } from "node:events";
import { accessSync, constants } from "node:fs";
import { createInterface } from "node:readline";

import {
  CancelledError,
  ConnectionClosedError,
  QuarryError,
  QuarryTimeoutError,
  errorFrom,
} from "./errors.js";
import type {
  CollectionsCreateResult,
  CollectionsDeleteResult,
  CollectionsListResult,
  DocumentsDeleteParams,
  DocumentsDeleteResult,
  DocumentsIngestParams,
  DocumentsIngestDirParams,
  DocumentsIngestDirResult,
  DocumentsIngestResult,
  HealthResult,
  SearchQueryParams,
  SearchQueryResult,
  SearchSymbolsParams,
  SearchSymbolsResult,
  SidecarReadyParams,
  StatsResult,
  WatchEventParams,
  WatchListResult,
  WatchStartParams,
  WatchStartResult,
  WatchStopResult,
} from "./generated/index.js";

/** Params without `_meta` (set through {@link CallOptions}). */
type Params<P> = Omit<P, "_meta">;

/** `priority` of `_meta` (PROTOCOL.md §3). */
export type Priority = "high" | "normal" | "low";

/** A `notifications/progress` for one call. */
export interface Progress {
  progress: number;
  total?: number;
  message?: string;
}

/** Per-call options. */
export interface CallOptions {
  /** Deadline in ms (sent as `_meta.timeoutMs`; the call also rejects on its own a
   * second after it, should the sidecar not answer). Default: the client's. */
  timeoutMs?: number;
  /** Queue priority (`_meta.priority`). */
  priority?: Priority;
  /** Aborting sends `notifications/cancelled` and rejects with {@link CancelledError}. */
  signal?: AbortSignal;
  /** Called for each progress notification of this call (a `progressToken` is sent). */
  onProgress?: (p: Progress) => void;
  /** Through a supervisor: re-send the call to the next sidecar if this one dies
   * (`_meta.idempotent`). Reads are idempotent; the helpers set it. */
  idempotent?: boolean;
}

/** Options of {@link QuarryClient.spawn}. */
export interface SpawnOptions {
  /** The `quarry` executable: default `$QUARRY_BIN`, else `quarry` on `PATH`. */
  bin?: string;
  /** Run behind `quarry supervise` (restarts, no orphan); default true. */
  supervised?: boolean;
  /** `--data-dir` of the sidecar. */
  dataDir?: string;
  /** More `quarry serve` flags, e.g. `["--no-grpc", "--debug-methods"]`. */
  serveArgs?: string[];
  /** `quarry supervise` flags, e.g. `["--max-restarts", "3"]`. */
  superviseArgs?: string[];
  /** Extra environment for the sidecar. */
  env?: Record<string, string>;
  /** How long to wait for `sidecar/ready`, ms (default 30000). */
  readyTimeoutMs?: number;
  /** Default per-call deadline, ms (default none). */
  timeoutMs?: number;
  /** Each stderr line of the sidecar (logs); by default kept (the last 200) only. */
  onStderr?: (line: string) => void;
}

type Pending = {
  method: string;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  onProgress?: (p: Progress) => void;
  cleanup: () => void;
};

const STDERR_KEPT = 200;
const CLIENT_GRACE_MS = 1000;

/** The executable to run: `bin`, else `$QUARRY_BIN`, else `quarry` (from `PATH`). An
 * explicit one that is not executable is an error, never silently replaced. */
export function findBinary(bin?: string): string {
  for (const [what, candidate] of [["bin", bin], ["QUARRY_BIN", process.env.QUARRY_BIN]] as const) {
    if (candidate) {
      try {
        accessSync(candidate, constants.X_OK);
      } catch {
        throw new Error(`${what}=${candidate} is not an executable file`);
      }
      return candidate;
    }
  }
  return "quarry";
}

/**
 * A connection to one sidecar process. Events: `notification` `(method, params)` for
 * every notification (`watch/event`, `supervisor/event`, `sidecar/ready`, …), `exit`
 * `(code, signal)`.
 */
export class QuarryClient extends EventEmitter {
  /** The first `sidecar/ready` params (protocol version, version, pid, methods). */
  readonly ready: SidecarReadyParams;
  /** The spawned process (the supervisor when supervised). */
  readonly process: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<number | string, Pending>();
  private nextId = 1;
  private closed: QuarryError | null = null;
  private readonly stderrLines: string[] = [];
  private readonly defaultTimeoutMs?: number;
  private readonly onExit: () => void;

  private constructor(
    child: ChildProcessWithoutNullStreams,
    ready: SidecarReadyParams,
    defaultTimeoutMs: number | undefined,
  ) {
    super();
    this.process = child;
    this.ready = ready;
    this.defaultTimeoutMs = defaultTimeoutMs;
    // No orphan: if this process exits without close(), the sidecar's group goes too.
    this.onExit = () => killGroup(child, "SIGKILL");
    process.on("exit", this.onExit);
  }

  /** Spawns the sidecar and resolves once it has sent `sidecar/ready`. */
  static async spawn(options: SpawnOptions = {}): Promise<QuarryClient> {
    const exe = findBinary(options.bin);
    const serve = [exe, "serve", ...(options.dataDir ? ["--data-dir", options.dataDir] : []), ...(options.serveArgs ?? [])];
    const argv = options.supervised === false ? serve : [exe, "supervise", ...(options.superviseArgs ?? []), "--", ...serve];
    const child = spawnChild(argv[0]!, argv.slice(1), {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, ...(options.env ?? {}) },
      detached: true,
    });
    const stderr: string[] = [];
    const readyTimeout = options.readyTimeoutMs ?? 30000;
    let client: QuarryClient | undefined;
    const ready = await new Promise<SidecarReadyParams>((resolve, reject) => {
      const timer = setTimeout(() => {
        killGroup(child, "SIGKILL");
        reject(new Error(`no sidecar/ready within ${readyTimeout} ms; stderr:\n${stderr.join("\n")}`));
      }, readyTimeout);
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`quarry exited before ready (code ${code}, signal ${signal}); stderr:\n${stderr.join("\n")}`));
      });
      createInterface({ input: child.stderr, crlfDelay: Infinity }).on("line", (line) => {
        if (client) client.stderrLine(line, options.onStderr);
        else stderr.push(line);
      });
      createInterface({ input: child.stdout, crlfDelay: Infinity }).on("line", (line) => {
        if (client) {
          client.receive(line);
          return;
        }
        let message: { method?: string; params?: unknown };
        try {
          message = JSON.parse(line);
        } catch {
          return;
        }
        // Nothing is asked before ready: only the ready notification matters here.
        if (message.method === "sidecar/ready") {
          clearTimeout(timer);
          resolve(message.params as SidecarReadyParams);
        }
      });
    });
    child.removeAllListeners("exit");
    child.removeAllListeners("error");
    client = new QuarryClient(child, ready, options.timeoutMs);
    client.stderrLines.push(...stderr.slice(-STDERR_KEPT));
    child.on("exit", (code, signal) => client!.lost(code, signal));
    child.stdin.on("error", () => {
      /* the exit handler reports it */
    });
    return client;
  }

  /** The sidecar's last stderr lines (logs), oldest first. */
  stderr(): string[] {
    return [...this.stderrLines];
  }

  /**
   * Calls `method` with `params`; resolves with its result or rejects with a typed
   * {@link QuarryError} (see errors.ts).
   */
  call<R = unknown>(method: string, params?: Record<string, unknown>, options: CallOptions = {}): Promise<R> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    const meta: Record<string, unknown> = {};
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    if (timeoutMs !== undefined) meta.timeoutMs = Math.max(1, Math.round(timeoutMs));
    if (options.priority) meta.priority = options.priority;
    if (options.onProgress) meta.progressToken = id;
    if (options.idempotent) meta.idempotent = true;
    const body: Record<string, unknown> = { ...(params ?? {}) };
    if (Object.keys(meta).length) body._meta = meta;
    return new Promise<R>((resolve, reject) => {
      if (options.signal?.aborted) {
        reject(new CancelledError(-32800, "cancelled before it was sent", { kind: "cancelled" }));
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        this.notify("notifications/cancelled", { requestId: id, reason: "aborted by the host" });
        this.settle(id, undefined, new CancelledError(-32800, "cancelled by the host", { kind: "cancelled" }));
      };
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject, onProgress: options.onProgress, cleanup });
      options.signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined) {
        // The sidecar answers -32001 at the deadline; this is the backstop.
        timer = setTimeout(() => {
          this.notify("notifications/cancelled", { requestId: id, reason: "client deadline" });
          this.settle(id, undefined, new QuarryTimeoutError(-32001, `no answer within ${timeoutMs} ms`, {
            kind: "timeout",
            timeoutMs,
            stage: "client",
          }));
        }, timeoutMs + CLIENT_GRACE_MS);
      }
      this.write({ jsonrpc: "2.0", id, method, params: body });
    });
  }

  /** Sends a notification (no answer). */
  notify(method: string, params?: Record<string, unknown>): void {
    if (this.closed) return;
    this.write(params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params });
  }

  /**
   * Stops the sidecar without leaving anything behind: `shutdown` (it drains), end of
   * input, then SIGTERM and SIGKILL to its process group; resolves once it has exited.
   */
  async close(graceMs = 5000): Promise<void> {
    process.off("exit", this.onExit);
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.process.once("exit", () => resolve()));
    const wait = (ms: number) => Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
    try {
      await Promise.race([this.call("shutdown", undefined, {}), new Promise((r) => setTimeout(r, graceMs).unref())]);
    } catch {
      /* escalate below */
    }
    this.process.stdin.end();
    if (await wait(graceMs)) return;
    killGroup(this.process, "SIGTERM");
    if (await wait(3000)) return;
    killGroup(this.process, "SIGKILL");
    await exited;
  }

  // ---- typed helpers: one per method of PROTOCOL.md §7 and §9 ----

  /** `ping` → `{}`. */
  ping(options?: CallOptions): Promise<Record<string, never>> {
    return this.call("ping", undefined, options);
  }

  /** `health`. */
  health(options?: CallOptions): Promise<HealthResult> {
    return this.call("health", undefined, options);
  }

  /** `stats`: counters and latency percentiles per method, queue figures, memory. */
  stats(options?: CallOptions): Promise<StatsResult> {
    return this.call("stats", undefined, options);
  }

  /** `collections/list`. */
  collections(options?: CallOptions): Promise<CollectionsListResult> {
    return this.call("collections/list", undefined, { idempotent: true, ...options });
  }

  /** `collections/create`. */
  createCollection(name: string, options?: CallOptions): Promise<CollectionsCreateResult> {
    return this.call("collections/create", { name }, { idempotent: true, ...options });
  }

  /** `collections/delete`. */
  deleteCollection(name: string, options?: CallOptions): Promise<CollectionsDeleteResult> {
    return this.call("collections/delete", { name }, { idempotent: true, ...options });
  }

  /** `documents/ingest`: one file (or `content` under the name `path`), idempotent. */
  ingest(path: string, params: Omit<Params<DocumentsIngestParams>, "path"> = {}, options?: CallOptions): Promise<DocumentsIngestResult> {
    return this.call("documents/ingest", { path, ...params }, { idempotent: true, ...options });
  }

  /** `documents/ingestDir`: a folder; `options.onProgress` gets files done / total. */
  ingestDir(root: string, params: Omit<Params<DocumentsIngestDirParams>, "root"> = {}, options?: CallOptions): Promise<DocumentsIngestDirResult> {
    return this.call("documents/ingestDir", { root, ...params }, { idempotent: true, ...options });
  }

  /** `documents/delete` by `path` (a file or a folder) and/or `documentId`. */
  deleteDocuments(params: Params<DocumentsDeleteParams>, options?: CallOptions): Promise<DocumentsDeleteResult> {
    return this.call("documents/delete", { ...params }, { idempotent: true, ...options });
  }

  /** `search/query`: ranked chunks with snippets (and a `location` in documents). */
  search(query: string, params: Omit<Params<SearchQueryParams>, "query"> = {}, options?: CallOptions): Promise<SearchQueryResult> {
    return this.call("search/query", { query, ...params }, { idempotent: true, ...options });
  }

  /** `search/symbols`: definitions by name. */
  symbols(query: string, params: Omit<Params<SearchSymbolsParams>, "query"> = {}, options?: CallOptions): Promise<SearchSymbolsResult> {
    return this.call("search/symbols", { query, ...params }, { idempotent: true, ...options });
  }

  /** `watch/start`: keep `root` indexed; changes arrive as {@link QuarryClient.onWatchEvent}. */
  watchStart(root: string, params: Omit<Params<WatchStartParams>, "root"> = {}, options?: CallOptions): Promise<WatchStartResult> {
    return this.call("watch/start", { root, ...params }, options);
  }

  /** `watch/stop`. */
  watchStop(watchId: string, options?: CallOptions): Promise<WatchStopResult> {
    return this.call("watch/stop", { watchId }, options);
  }

  /** `watch/list`. */
  watchList(options?: CallOptions): Promise<WatchListResult> {
    return this.call("watch/list", undefined, { idempotent: true, ...options });
  }

  /** Calls `listener` for each `watch/event`; returns a function that stops it. */
  onWatchEvent(listener: (event: WatchEventParams) => void): () => void {
    const handler = (method: string, params: unknown) => {
      if (method === "watch/event") listener(params as WatchEventParams);
    };
    this.on("notification", handler);
    return () => this.off("notification", handler);
  }

  private write(message: unknown): void {
    try {
      this.process.stdin.write(JSON.stringify(message) + "\n");
    } catch {
      /* the exit handler rejects what is pending */
    }
  }

  private stderrLine(line: string, forward?: (line: string) => void): void {
    this.stderrLines.push(line);
    if (this.stderrLines.length > STDERR_KEPT) this.stderrLines.shift();
    forward?.(line);
  }

  private receive(line: string): void {
    if (!line.trim()) return;
    let message: any;
    try {
      message = JSON.parse(line);
    } catch {
      this.emit("protocolError", line);
      return;
    }
    for (const m of Array.isArray(message) ? message : [message]) this.dispatch(m);
  }

  private dispatch(m: any): void {
    if (m === null || typeof m !== "object") return;
    if (typeof m.method === "string") {
      if (m.method === "notifications/progress" && m.params) {
        const p = this.pending.get(m.params.progressToken);
        p?.onProgress?.({ progress: m.params.progress, total: m.params.total, message: m.params.message });
        return;
      }
      this.emit("notification", m.method, m.params);
      return;
    }
    if (m.id === undefined || m.id === null) {
      this.emit("protocolError", JSON.stringify(m));
      return;
    }
    if ("error" in m) this.settle(m.id, undefined, errorFrom(m.error));
    else this.settle(m.id, m.result, undefined);
  }

  private settle(id: number | string, result: unknown, error: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.cleanup();
    if (error) p.reject(error);
    else p.resolve(result);
  }

  private lost(code: number | null, signal: NodeJS.Signals | null): void {
    process.off("exit", this.onExit);
    this.closed = new ConnectionClosedError(-32004, `the quarry process exited (code ${code}, signal ${signal})`, {
      kind: "connection_closed",
      exitCode: code,
      signal,
    });
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, this.closed);
    this.emit("exit", code, signal);
  }
}

/** Signals the process group of `child` (the child alone if that fails). */
function killGroup(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* gone */
    }
  }
}

export { QuarryError };
