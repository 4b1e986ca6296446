/**
 * Quarry's TypeScript client (Node ≥ 20): spawn the sidecar, call it with typed
 * params and results (generated from `schemas/`), cancel with an `AbortSignal`, follow
 * progress, catch one error class per protocol `data.kind`.
 *
 * ```ts
 * import { QuarryClient } from "quarry-client";
 * const q = await QuarryClient.spawn({ dataDir: "/tmp/q" });
 * await q.ingestDir("./docs", {}, { onProgress: (p) => console.log(p.progress, p.total) });
 * const { hits } = await q.search("how to configure");
 * await q.close();
 * ```
 */
export { QuarryClient, findBinary } from "./client.js";
export type { CallOptions, Priority, Progress, SpawnOptions } from "./client.js";
export * from "./errors.js";
export type * from "./generated/index.js";
export type { SearchHit, Location, Source } from "./generated/search.query.result.js";
export type { Skipped } from "./generated/documents.ingestDir.result.js";
