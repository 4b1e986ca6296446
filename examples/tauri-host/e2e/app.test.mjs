// End to end under a real display server and browser engine: Xvfb, tauri-driver and
// WebKitWebDriver (Debian's webkit2gtk-driver) driving the real app with the WebDriver
// protocol (plain HTTP): index the document fixtures from the page and see progress,
// search and see the hit, take a screenshot, then kill the app with SIGKILL and find its
// quarry sidecar gone.
//
// Needs: QUARRY_TAURI_APP (the app binary), QUARRY_BIN, tauri-driver and WebKitWebDriver
// on PATH, Xvfb. SCREENSHOT names where the screenshot goes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "..", "..", "..", "tests", "fixtures", "documents");
// The W3C WebDriver element reference key.
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what, check, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

test("index, progress, search, screenshot, and no sidecar after SIGKILL", async (t) => {
  const app = process.env.QUARRY_TAURI_APP;
  assert.ok(app && process.env.QUARRY_BIN, "QUARRY_TAURI_APP and QUARRY_BIN are required");
  const display = `:${90 + (process.pid % 9)}`;
  const xvfb = spawn("Xvfb", [display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"], { stdio: "ignore" });
  t.after(() => xvfb.kill("SIGKILL"));
  await sleep(500);
  const data = mkdtempSync(join(tmpdir(), "quarry-tauri-e2e-"));
  const port = 4444 + (process.pid % 500);
  // In its own process group, so that its WebKitWebDriver goes with it.
  const driver = spawn("tauri-driver", ["--port", String(port), "--native-port", String(port + 1)], {
    env: { ...process.env, DISPLAY: display, QUARRY_DATA_DIR: data },
    stdio: ["ignore", "inherit", "inherit"],
    detached: true,
  });
  t.after(() => {
    try {
      process.kill(-driver.pid, "SIGKILL");
    } catch {
      driver.kill("SIGKILL");
    }
  });
  const base = `http://127.0.0.1:${port}`;
  async function wd(method, path, body) {
    const r = await fetch(base + path, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json.value;
  }
  await until("tauri-driver", async () => (await fetch(base + "/status")).ok, 20000);
  const session = await wd("POST", "/session", {
    capabilities: { alwaysMatch: { "tauri:options": { application: app } } },
  });
  const sid = session.sessionId;
  const s = (path) => `/session/${sid}${path}`;
  const find = async (css) => (await wd("POST", s("/element"), { using: "css selector", value: css }))[ELEMENT];
  const text = async (css) => wd("GET", s(`/element/${await find(css)}/text`));
  const type = async (css, value) => wd("POST", s(`/element/${await find(css)}/value`), { text: value });
  const click = async (css) => wd("POST", s(`/element/${await find(css)}/click`), {});

  // The engine comes up: the page shows the sidecar's pid.
  const pid = Number(await until("the sidecar pid", async () => {
    const p = await text("#pid");
    return /^\d+$/.test(p) ? p : null;
  }));
  assert.ok(alive(pid));

  await type("#folder", fixtures);
  await click("#index");
  const indexed = await until("the index result", async () => {
    const r = await text("#index-result");
    return r.startsWith("indexed") ? r : null;
  });
  assert.match(indexed, /indexed \d+ files/);
  assert.match(await text("#progress-text"), /^\d+ \/ \d+ files/);

  await type("#query", "quartz lantern protocol");
  await click("#search");
  const place = await until("a hit", () => text("#hits li.hit .place"));
  assert.match(place, /(sample|broken-xref)\.pdf:\d+-\d+$/);
  assert.match(await text("#hits li.hit .where"), /page 2/);
  assert.match(await text("#hits li.hit .snippet"), /quartz lantern protocol/);

  const png = await wd("GET", s("/screenshot"));
  if (process.env.SCREENSHOT) writeFileSync(process.env.SCREENSHOT, Buffer.from(png, "base64"));

  // Kill the app itself (the sidecar's parent) with SIGKILL: no quarry may be left.
  const appPid = await until("the app's pid", async () => {
    const stat = await import("node:fs").then((fs) => fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  });
  process.kill(appPid, "SIGKILL");
  await until("the sidecar to exit", () => !alive(pid), 15000);
  await wd("DELETE", s("")).catch(() => {});
});
