// The TypeScript client against the real binary ($QUARRY_BIN, built by scripts/test.sh):
// correlation under concurrency, cancellation, deadlines, progress, typed errors,
// large lines, a crash through the supervisor, documents, and no process left behind.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";

import {
  QuarryClient,
  CancelledError,
  QuarryTimeoutError,
  InvalidParamsError,
  MethodNotFoundError,
  NotFoundError,
  InternalError,
  SidecarExitedError,
  ConnectionClosedError,
} from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");
assert.ok(process.env.QUARRY_BIN, "QUARRY_BIN must name the binary under test");

const tmp = () => mkdtempSync(join(tmpdir(), "quarry-ts-"));
const spawnDebug = (extra = {}) =>
  QuarryClient.spawn({ dataDir: tmp(), serveArgs: ["--no-grpc", "--debug-methods"], ...extra });

/** Whether a process with this pid exists. */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function eventually(check, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test("concurrent calls are correlated, large lines pass, close leaves nothing", async () => {
  const q = await spawnDebug({ supervised: false });
  assert.equal(q.ready.protocolVersion, 1);
  const echoed = await Promise.all(Array.from({ length: 300 }, (_, i) => q.call("debug/echo", { i })));
  assert.deepEqual(echoed.map((e) => e.i), Array.from({ length: 300 }, (_, i) => i));
  const big = "x".repeat(3 * 1024 * 1024);
  assert.equal((await q.call("debug/echo", { big })).big.length, big.length);
  const health = await q.health();
  assert.equal(health.status, "ok");
  const pid = q.ready.pid;
  await q.close();
  assert.equal(alive(pid), false);
  await assert.rejects(q.ping(), ConnectionClosedError);
});

test("cancel, deadline, priority and progress", async () => {
  const q = await spawnDebug({ supervised: false });
  try {
    // AbortSignal → notifications/cancelled; the call rejects at once, the sidecar goes on.
    const controller = new AbortController();
    const started = Date.now();
    const slow = q.call("debug/sleep", { ms: 20000 }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(slow, CancelledError);
    assert.ok(Date.now() - started < 5000);
    await assert.rejects(q.call("debug/sleep", { ms: 10 }, { signal: AbortSignal.abort() }), CancelledError);
    // The sidecar's deadline: -32001 with the stage.
    const err = await q.call("debug/sleep", { ms: 5000 }, { timeoutMs: 100 }).catch((e) => e);
    assert.ok(err instanceof QuarryTimeoutError, String(err));
    assert.equal(err.kind, "timeout");
    assert.equal(err.data.stage, "running");
    // Progress, increasing, before the result.
    const seen = [];
    const r = await q.call("debug/sleep", { ms: 100 }, { onProgress: (p) => seen.push(p.progress), priority: "high" });
    assert.equal(r.slept, 100);
    assert.ok(seen.length >= 3, String(seen));
    assert.deepEqual([...seen].sort((a, b) => a - b), seen);
  } finally {
    await q.close();
  }
});

test("typed errors", async () => {
  const q = await spawnDebug({ supervised: false });
  try {
    await assert.rejects(q.call("no/such/method"), MethodNotFoundError);
    const e = await q.search("").catch((x) => x);
    assert.ok(e instanceof InvalidParamsError, String(e));
    assert.equal(e.code, -32602);
    await assert.rejects(q.ingest(join(tmp(), "missing.txt")), NotFoundError);
    await assert.rejects(q.call("debug/panic"), InternalError);
    assert.deepEqual(await q.ping(), {});
  } finally {
    await q.close();
  }
});

test("ingest with progress, search with locations, symbols, watch events", async () => {
  const q = await QuarryClient.spawn({ dataDir: tmp(), serveArgs: ["--no-grpc"] });
  try {
    const progress = [];
    const r = await q.ingestDir(join(repo, "tests", "fixtures", "documents"), {}, { onProgress: (p) => progress.push(p) });
    assert.ok(r.files > 5 && progress.length > 0, JSON.stringify(r));
    assert.ok(r.skipped.some((s) => s.path.endsWith("encrypted.pdf") && s.reason.includes("encrypted PDF")));
    const { hits } = await q.search("quartz lantern protocol", { filter: { languages: ["pdf"] } });
    assert.ok(hits[0].path.endsWith("sample.pdf"));
    assert.deepEqual(hits[0].location, { page: 2, heading: "Installing" });
    const code = await q.ingestDir(join(repo, "tests", "fixtures", "symbols"), { collection: "code" });
    assert.ok(code.files > 0);
    const { symbols } = await q.symbols("make_square", { collection: "code" });
    assert.equal(symbols[0].name, "make_square");
    const collections = await q.collections();
    assert.deepEqual(collections.collections.map((c) => c.name).sort(), ["code", "default"]);

    const root = tmp();
    const events = [];
    const stop = q.onWatchEvent((e) => events.push(e));
    const { watchId } = await q.watchStart(root, { debounceMs: 50 });
    writeFileSync(join(root, "ibex.txt"), "the alpine ibex climbs\n");
    assert.ok(await eventually(() => events.some((e) => e.path.endsWith("ibex.txt") && e.indexed)));
    assert.ok((await q.search("alpine ibex")).hits[0].path.endsWith("ibex.txt"));
    stop();
    assert.equal((await q.watchStop(watchId)).stopped, true);
  } finally {
    await q.close();
  }
});

test("a crash through the supervisor: the call fails typed, the next one is served", async () => {
  const q = await spawnDebug({ superviseArgs: ["--backoff-initial-ms", "50"] });
  try {
    const events = [];
    q.on("notification", (method, params) => {
      if (method === "supervisor/event") events.push(params.event);
    });
    const first = (await q.call("supervisor/status")).pid;
    const err = await q.call("debug/exit", { code: 3 }).catch((e) => e);
    assert.ok(err instanceof SidecarExitedError, String(err));
    assert.equal(err.data.exitCode, 3);
    assert.deepEqual(await q.ping(), {});
    const status = await q.call("supervisor/status");
    assert.notEqual(status.pid, first);
    assert.ok(status.restarts >= 1);
    assert.ok(events.includes("exited") && events.includes("restarting"), String(events));
    await q.close();
    assert.equal(alive(first), false);
    assert.equal(alive(status.pid), false);
  } finally {
    await q.close();
  }
});

test("no quarry process outlives a host killed with SIGKILL", async () => {
  // A host process that spawns a supervised sidecar, prints the pids, then waits.
  const dir = tmp();
  const script = join(dir, "host.mjs");
  const client = join(here, "..", "dist", "index.js");
  writeFileSync(
    script,
    `import { QuarryClient } from ${JSON.stringify(client)};
const q = await QuarryClient.spawn({ dataDir: ${JSON.stringify(join(dir, "data"))}, serveArgs: ["--no-grpc"] });
const status = await q.call("supervisor/status");
console.log(JSON.stringify({ supervisor: q.process.pid, sidecar: status.pid }));
setInterval(() => {}, 1000);
`,
  );
  const host = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve) => host.stdout.once("data", (d) => resolve(String(d))));
  const pids = JSON.parse(line);
  assert.ok(alive(pids.supervisor) && alive(pids.sidecar));
  host.kill("SIGKILL");
  assert.ok(await eventually(() => !alive(pids.supervisor) && !alive(pids.sidecar), 15000), JSON.stringify(pids));
});
