// @ts-check
// The page: no build step. Types come from the TypeScript client's types generated from
// schemas/ (checked by `tsc -p examples/tauri-host/ui` in scripts/test.sh).

/** @typedef {import("../../../clients/typescript/src/generated/index.js").DocumentsIngestDirResult} IngestDirResult */
/** @typedef {import("../../../clients/typescript/src/generated/index.js").HealthResult} HealthResult */
/** @typedef {import("../../../clients/typescript/src/generated/index.js").StatsResult} StatsResult */
/** @typedef {import("../../../clients/typescript/src/generated/index.js").SupervisorEventParams} SupervisorEvent */
/** @typedef {import("../../../clients/typescript/src/generated/search.query.result.js").Location} Location */
/** @typedef {{ place: string, path: string, startLine: number, endLine: number, snippet: string, score: number, language: string, location?: Location | null }} Hit */
/** @typedef {{ done: number, total?: number | null, message?: string | null }} IndexProgress */
/** @typedef {{ supervisor: { state: string, pid?: number | null, restarts: number }, health?: HealthResult | null, stats?: StatsResult | null }} Status */

/** @type {any} */
const tauri = /** @type {any} */ (window).__TAURI__;
const { invoke, Channel } = tauri.core;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));

let job = 0;

/** @param {Location | null | undefined} l */
function where(l) {
  if (!l) return "";
  const parts = [];
  if (l.page != null) parts.push(`page ${l.page}`);
  if (l.chapter) parts.push(`chapter ${l.chapter}`);
  if (l.cell != null) parts.push(`cell ${l.cell}`);
  if (l.heading) parts.push(l.heading);
  return parts.join(" · ");
}

async function index() {
  const folder = input("folder").value.trim();
  if (!folder) return;
  job += 1;
  const mine = job;
  const progress = /** @type {HTMLProgressElement} */ ($("progress"));
  progress.value = 0;
  $("progress-text").textContent = "starting…";
  $("index-result").textContent = "";
  /** @type {any} */
  const channel = new Channel();
  channel.onmessage = (/** @type {IndexProgress} */ p) => {
    progress.max = p.total || 1;
    progress.value = p.done;
    // The sidecar's message is "done/total files, N MB": the MB part is shown.
    const read = (p.message ?? "").split(", ").slice(1).join(", ");
    $("progress-text").textContent = `${p.done} / ${p.total ?? "?"} files${read ? ` · ${read}` : ""}`;
  };
  /** @type {HTMLButtonElement} */ ($("cancel")).disabled = false;
  try {
    /** @type {IngestDirResult} */
    const r = await invoke("index_folder", { path: folder, job: mine, onProgress: channel });
    $("index-result").textContent = `indexed ${r.files} files, ${r.chunks} chunks, ${r.unchanged} unchanged, ${r.skipped.length} skipped in ${r.elapsedMs} ms`;
    $("index-result").dataset.done = "true";
  } catch (e) {
    $("index-result").textContent = `index failed: ${e}`;
  } finally {
    /** @type {HTMLButtonElement} */ ($("cancel")).disabled = true;
    refresh();
  }
}

async function search() {
  const query = input("query").value.trim();
  if (!query) return;
  const list = $("hits");
  list.textContent = "";
  try {
    /** @type {Hit[]} */
    const hits = await invoke("search", { query, limit: 10 });
    for (const h of hits) {
      const li = document.createElement("li");
      li.className = "hit";
      const place = document.createElement("div");
      place.className = "place";
      place.textContent = h.place;
      const loc = document.createElement("div");
      loc.className = "where";
      loc.textContent = [where(h.location), h.language, h.score.toFixed(3)].filter(Boolean).join(" · ");
      const snippet = document.createElement("pre");
      snippet.className = "snippet";
      snippet.textContent = h.snippet;
      li.append(place, loc, snippet);
      list.append(li);
    }
    if (!hits.length) list.textContent = "no hits";
  } catch (e) {
    list.textContent = `search failed: ${e}`;
  }
}

async function refresh() {
  try {
    /** @type {Status} */
    const s = await invoke("status");
    $("state").textContent = s.supervisor.state;
    $("pid").textContent = String(s.supervisor.pid ?? "–");
    $("restarts").textContent = String(s.supervisor.restarts);
    if (s.health) {
      const rss = (s.health.rssBytes / 1048576).toFixed(0);
      $("metrics").textContent = `in flight ${s.health.inFlight} · queued ${s.health.queued} · RSS ${rss} MB · up ${(s.health.uptimeMs / 1000).toFixed(0)} s`;
    }
  } catch (e) {
    $("metrics").textContent = `status failed: ${e}`;
  }
}

tauri.event.listen("supervisor", (/** @type {{ payload: SupervisorEvent }} */ e) => {
  const line = document.createElement("div");
  line.textContent = `${e.payload.event}${e.payload.pid ? ` pid ${e.payload.pid}` : ""}${e.payload.reason ? ` (${e.payload.reason})` : ""}`;
  $("events").prepend(line);
  refresh();
});

$("index").addEventListener("click", index);
$("cancel").addEventListener("click", () => invoke("cancel_index", { job }));
$("search").addEventListener("click", search);
input("query").addEventListener("keydown", (e) => {
  if (e.key === "Enter") search();
});
refresh();
setInterval(refresh, 2000);
