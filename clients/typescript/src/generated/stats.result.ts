// Generated from schemas/json/stats.result.json by scripts/gen-types.mjs. Do not edit.

/**
 * Request counters and latency percentiles per method, queue figures, memory.
 */
export interface StatsResult {
  /**
   * Milliseconds since start.
   */
  uptimeMs: number;
  /**
   * Resident memory, bytes.
   */
  rssBytes: number;
  queue: QueueStats;
  messages: MessageStats;
  /**
   * Per method: counts, errors by kind, latency percentiles (µs, read to response).
   */
  methods: {
    [k: string]: MethodStats;
  };
}
/**
 * Scheduling figures.
 */
export interface QueueStats {
  /**
   * Requests running now.
   */
  running: number;
  /**
   * Requests waiting now.
   */
  queued: number;
  /**
   * Highest number waiting at once since start.
   */
  peakQueued: number;
  /**
   * `--max-concurrency`.
   */
  maxConcurrency: number;
  /**
   * `--max-queue`.
   */
  maxQueue: number;
  /**
   * Requests refused with `overloaded` since start.
   */
  overloaded: number;
}
/**
 * Messages that never reached a method.
 */
export interface MessageStats {
  /**
   * Lines that were not JSON or not UTF-8.
   */
  parseErrors: number;
  /**
   * Lines over `--max-message-bytes`.
   */
  tooLarge: number;
  /**
   * Values that were not valid requests.
   */
  invalidRequests: number;
  /**
   * Notifications received.
   */
  notifications: number;
}
/**
 * Figures for one method.
 */
export interface MethodStats {
  /**
   * Requests answered.
   */
  count: number;
  /**
   * Answered with a result.
   */
  ok: number;
  /**
   * Answered with an error, by `data.kind`.
   */
  errors: {
    [k: string]: number;
  };
  latencyUs: Percentiles;
}
/**
 * Latency percentiles, microseconds.
 */
export interface Percentiles {
  /**
   * Median.
   */
  p50: number;
  /**
   * 90th percentile.
   */
  p90: number;
  /**
   * 99th percentile.
   */
  p99: number;
  /**
   * Maximum.
   */
  max: number;
  /**
   * Mean.
   */
  mean: number;
}
