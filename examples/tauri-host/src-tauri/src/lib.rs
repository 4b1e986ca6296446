//! A Tauri v2 host of the Quarry sidecar: the backend holds a `quarry-supervisor` in
//! Tauri's state (it spawns `quarry serve`, restarts it, keeps it in limits), forwards
//! the supervisor's events to the page (`supervisor` event), and exposes commands:
//! - `index_folder(path, job, onProgress)`: `documents/ingestDir`, progress streamed
//!   over a Tauri channel; `cancel_index(job)` cancels it (the dropped call sends
//!   `notifications/cancelled` to the sidecar);
//! - `search(query, limit?)`: hits with `path:start-end`, snippet and location;
//! - `status()`: the supervisor's state and the sidecar's `health` and `stats`.
//!
//! The engine stops on `ExitRequested`; if the app is killed, the sidecar dies with it
//! (`PR_SET_PDEATHSIG` from the supervisor, and end of input).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quarry_supervisor::{CallOptions, Config, Supervisor};
use serde::Serialize;
use serde_json::{Value, json};
use tauri::ipc::Channel;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Runtime, State};
use tokio_util::sync::CancellationToken;

/// The app's state: the supervised engine and the cancel tokens of running index jobs.
pub struct Engine {
    supervisor: Supervisor,
    jobs: Mutex<HashMap<u64, CancellationToken>>,
    stopped: AtomicBool,
}

impl Engine {
    /// Stops the sidecar (drain, end of input, then signals); once.
    pub async fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.supervisor.shutdown().await;
        }
    }
}

/// One progress message of an index job, sent over its channel.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexProgress {
    /// Files done.
    pub done: f64,
    /// Files in all (when known).
    pub total: Option<f64>,
    /// The sidecar's message (MB read).
    pub message: Option<String>,
}

/// One search hit as the page shows it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    /// `path:start-end`.
    pub place: String,
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    pub snippet: String,
    pub score: f64,
    pub language: String,
    /// A document's page, heading, chapter or cell.
    pub location: Option<Value>,
}

/// What `status` answers.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The supervisor's view: `state`, `pid`, `restarts`, `uptimeMs`, `lastExit`.
    pub supervisor: Value,
    /// The sidecar's `health` (absent while it is down).
    pub health: Option<Value>,
    /// The sidecar's `stats`: requests, latency percentiles per method, queue, memory.
    pub stats: Option<Value>,
}

fn quarry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("QUARRY_BIN") {
        return p.into();
    }
    // Beside the app's executable, else on PATH.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("quarry")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "quarry".into())
}

/// Starts the engine for `app`: data in `$QUARRY_DATA_DIR` or the app's data folder.
pub fn start<R: Runtime>(app: &AppHandle<R>) -> Result<Engine, String> {
    let data = match std::env::var_os("QUARRY_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => app
            .path()
            .app_data_dir()
            .map_err(|e| e.to_string())?
            .join("quarry"),
    };
    let mut config = Config::new(quarry_bin(), ["serve", "--no-grpc"]);
    config
        .child
        .env
        .push(("QUARRY_DATA_DIR".into(), data.into_os_string()));
    let supervisor = tauri::async_runtime::block_on(async { Supervisor::spawn(config) })
        .map_err(|e| format!("cannot start quarry ({}): {e}", quarry_bin().display()))?;
    // Supervisor events → the page.
    let mut events = supervisor.events();
    let handle = app.clone();
    tauri::async_runtime::spawn(async move {
        while let Ok(event) = events.recv().await {
            let _ = handle.emit("supervisor", &event);
        }
    });
    Ok(Engine {
        supervisor,
        jobs: Mutex::new(HashMap::new()),
        stopped: AtomicBool::new(false),
    })
}

/// Indexes `path`, streaming progress over `on_progress`; cancellable by
/// [`cancel_index`] with the same `job`. Answers the `documents/ingestDir` result.
#[tauri::command]
async fn index_folder(
    engine: State<'_, Engine>,
    path: String,
    job: u64,
    on_progress: Channel<IndexProgress>,
) -> Result<Value, String> {
    let token = CancellationToken::new();
    engine.jobs.lock().unwrap().insert(job, token.clone());
    let progress = on_progress.clone();
    let options = CallOptions {
        idempotent: true,
        on_progress: Some(Arc::new(move |p| {
            let _ = progress.send(IndexProgress {
                done: p.progress,
                total: p.total,
                message: p.message,
            });
        })),
        ..CallOptions::default()
    };
    let call =
        engine
            .supervisor
            .call::<_, Value>("documents/ingestDir", json!({ "root": path }), options);
    let outcome = tokio::select! {
        r = call => r.map_err(|e| e.to_string()),
        // Dropping the call sends notifications/cancelled to the sidecar.
        () = token.cancelled() => Err("cancelled".to_owned()),
    };
    engine.jobs.lock().unwrap().remove(&job);
    outcome
}

/// Cancels the index job `job`; `false` when it is not running.
#[tauri::command]
fn cancel_index(engine: State<'_, Engine>, job: u64) -> bool {
    match engine.jobs.lock().unwrap().get(&job) {
        Some(token) => {
            token.cancel();
            true
        }
        None => false,
    }
}

/// Searches; hits best first.
#[tauri::command]
async fn search(
    engine: State<'_, Engine>,
    query: String,
    limit: Option<u32>,
) -> Result<Vec<Hit>, String> {
    let r: Value = engine
        .supervisor
        .call(
            "search/query",
            json!({ "query": query, "limit": limit.unwrap_or(10) }),
            CallOptions {
                idempotent: true,
                timeout: Some(Duration::from_secs(30)),
                ..CallOptions::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(r["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let path = h["path"].as_str().unwrap_or_default().to_owned();
            let (start, end) = (
                h["startLine"].as_u64().unwrap_or(0),
                h["endLine"].as_u64().unwrap_or(0),
            );
            Hit {
                place: format!("{path}:{start}-{end}"),
                path,
                start_line: start,
                end_line: end,
                snippet: h["snippet"].as_str().unwrap_or_default().to_owned(),
                score: h["score"].as_f64().unwrap_or_default(),
                language: h["language"].as_str().unwrap_or_default().to_owned(),
                location: h.get("location").cloned(),
            }
        })
        .collect())
}

/// The supervisor's state and the sidecar's health and metrics.
#[tauri::command]
async fn status(engine: State<'_, Engine>) -> Result<StatusView, String> {
    let quick = || CallOptions {
        timeout: Some(Duration::from_secs(2)),
        ..CallOptions::default()
    };
    let supervisor = serde_json::to_value(engine.supervisor.status()).map_err(|e| e.to_string())?;
    let health = engine
        .supervisor
        .call::<_, Value>("health", json!({}), quick())
        .await
        .ok();
    let stats = engine
        .supervisor
        .call::<_, Value>("stats", json!({}), quick())
        .await
        .ok();
    Ok(StatusView {
        supervisor,
        health,
        stats,
    })
}

/// The app on any runtime (the real one, or Tauri's mock runtime in tests): state,
/// commands, and the engine started in `setup`.
pub fn app<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .setup(|app| {
            let engine = start(app.handle())?;
            app.manage(engine);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            index_folder,
            cancel_index,
            search,
            status
        ])
}

/// Stops the engine when the app is asked to exit (last window closed, `exit()`).
pub fn on_run_event<R: Runtime>(app: &AppHandle<R>, event: RunEvent) {
    if let RunEvent::ExitRequested { .. } | RunEvent::Exit = event
        && let Some(engine) = app.try_state::<Engine>()
    {
        tauri::async_runtime::block_on(engine.stop());
    }
}
