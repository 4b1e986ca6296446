//! `quarry-supervisor`: spawn, health-check, restart, resource-limit and stop a
//! JSON-RPC 2.0 sidecar speaking the Quarry protocol over stdio — at the protocol
//! level, so that no call is ever lost when the child dies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), quarry_supervisor::CallError> {
//! use quarry_supervisor::{CallOptions, Config, Supervisor};
//! let sup = Supervisor::spawn(Config::new("quarry", ["serve"])).expect("spawn");
//! let health: serde_json::Value = sup.call("health", serde_json::json!({}), CallOptions::default()).await?;
//! sup.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! - Readiness is the child's `sidecar/ready` notification; calls made before it wait.
//! - Health: `health` every `health_interval` with its own deadline; `health_failures`
//!   misses in a row (with no other message from the child meanwhile) = hung → restart.
//! - Restarts follow [`RestartPolicy`]; calls in flight when the child dies fail at once
//!   with [`CallError::SidecarExited`] (or are sent again to the next child when
//!   idempotent, within a per-call replay budget); calls not yet written wait for the
//!   next child. Request ids are never reused, and each response is matched against the
//!   generation of the child that received the request.
//! - Limits: `RLIMIT_NOFILE` / `RLIMIT_AS` at spawn; resident memory sampled every
//!   `rss_interval`; over `max_rss` → `limit_exceeded`, calls fail with
//!   [`CallError::MemoryLimit`], restart.
//! - No orphans: the child leads its own process group, gets `SIGKILL` when the spawner
//!   thread dies (`PR_SET_PDEATHSIG`), and exits on stdin EOF; stop is `shutdown` →
//!   drain → close stdin → `SIGTERM`+`SIGCONT` to the group → `SIGKILL`.

mod child;
pub mod policy;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::process::Signal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use child::ChildSpec;
pub use policy::{Decision, GiveUpReason, RestartMode, RestartPolicy, RestartState};

/// Supervisor configuration. [`Config::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The child to run.
    pub child: ChildSpec,
    /// How long a start may take to send `sidecar/ready`.
    pub start_timeout: Duration,
    /// Period of `health` checks.
    pub health_interval: Duration,
    /// Deadline of each `health` check.
    pub health_timeout: Duration,
    /// Missed checks in a row that mean hung.
    pub health_failures: u32,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Resident memory limit of the child in bytes.
    pub max_rss: Option<u64>,
    /// RSS sampling period.
    pub rss_interval: Duration,
    /// How long a stop waits for the `shutdown` request to drain the child.
    pub stop_timeout: Duration,
    /// How long a stop waits after closing stdin, and after `SIGTERM`.
    pub term_timeout: Duration,
    /// Calls that may wait for a ready child; more fail with `Unavailable`.
    pub max_waiting_calls: usize,
    /// Times an idempotent call is sent again after the child died under it.
    pub replay_budget: u32,
    /// Recent stderr lines kept for crash reports.
    pub stderr_lines: usize,
    /// Longest line accepted from the child's stdout.
    pub max_line_bytes: usize,
}

impl Config {
    /// Defaults: backoff 250 ms ×2 ≤ 30 s, reset after 60 s, 5 restarts / 60 s, health
    /// every 1 s with a 1 s deadline and 2 misses, start timeout 30 s, 1,024 open files.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Config {
            child: ChildSpec {
                program: program.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: Vec::new(),
                cwd: None,
                max_open_files: Some(1024),
                max_address_space: None,
            },
            start_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(1),
            health_failures: 2,
            restart: RestartPolicy::default(),
            max_rss: None,
            rss_interval: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(5),
            term_timeout: Duration::from_secs(2),
            max_waiting_calls: 4096,
            replay_budget: 2,
            stderr_lines: 64,
            max_line_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A progress notification of a call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgressUpdate {
    /// Increases with each update.
    pub progress: f64,
    /// Expected final value.
    #[serde(default)]
    pub total: Option<f64>,
    /// For people.
    #[serde(default)]
    pub message: Option<String>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(ProgressUpdate) + Send + Sync>;

/// Per-call options.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Deadline of the call, waiting for a ready child included; also sent to the
    /// child as `_meta.timeoutMs` (what is left of it).
    pub timeout: Option<Duration>,
    /// `_meta.priority`: `"high"`, `"normal"` or `"low"`.
    pub priority: Option<String>,
    /// Send again to the next child if the child dies under it.
    pub idempotent: bool,
    /// Receives the call's progress notifications.
    pub on_progress: Option<ProgressFn>,
}

/// Why a call failed: one variant per cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The call's deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The child died while the call was in flight.
    #[error("sidecar exited ({reason}; code {code:?}, signal {signal:?})")]
    SidecarExited {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Terminating signal, if killed.
        signal: Option<i32>,
        /// `crashed`, `hung`, `start timeout`, ...
        reason: String,
        /// Its last stderr lines.
        stderr_tail: Vec<String>,
    },
    /// The child went over `max_rss` and was restarted.
    #[error("sidecar exceeded its memory limit ({rss_bytes} > {limit_bytes} bytes)")]
    MemoryLimit {
        /// Resident memory when it was stopped.
        rss_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// No child can take the call (gave up restarting, stopping, too many waiting).
    #[error("sidecar unavailable: {0}")]
    Unavailable(String),
    /// The child broke the protocol or the params/result did not (de)serialize.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The child answered with a JSON-RPC error.
    #[error("{message} ({code}{})", kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default())]
    Server {
        /// JSON-RPC code.
        code: i64,
        /// `data.kind`.
        kind: Option<String>,
        /// Message.
        message: String,
        /// `data`.
        data: Option<Value>,
    },
}

/// Kinds of supervisor events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A child was spawned.
    Started,
    /// It sent `sidecar/ready`.
    Ready,
    /// A health check was missed.
    Unhealthy,
    /// It exited.
    Exited,
    /// A restart is scheduled.
    Restarting,
    /// It went over a resource limit.
    LimitExceeded,
    /// The restart budget is exhausted; no more children.
    GaveUp,
    /// The supervisor stopped.
    Stopped,
}

/// A supervisor event (`supervisor/event` in PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The child's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Terminating signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Restart number since the last backoff reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Delay before the restart, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Why, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resident memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Milliseconds since the supervisor was created.
    pub at_ms: u64,
}

/// A notification from the child other than progress (`sidecar/ready`, `watch/event`…).
#[derive(Debug, Clone)]
pub struct Notification {
    /// Method.
    pub method: String,
    /// Params (raw JSON text; `null` when absent).
    pub params: Arc<RawValue>,
    /// Which child sent it (1-based).
    pub generation: u64,
}

/// Supervisor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Spawning, or waiting for `sidecar/ready`.
    Starting,
    /// Serving.
    Ready,
    /// Waiting out a backoff delay.
    Restarting,
    /// The restart budget is exhausted.
    GaveUp,
    /// Stopping.
    Stopping,
    /// Stopped (by `shutdown`, or the child exited and the policy does not restart).
    Stopped,
}

/// How the last child ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit code.
    pub code: Option<i32>,
    /// Terminating signal.
    pub signal: Option<i32>,
    /// Why.
    pub reason: String,
}

/// `status()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// State.
    pub state: State,
    /// Current child's pid.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u64,
    /// Current child's uptime, ms.
    pub uptime_ms: Option<u64>,
    /// How the last child ended.
    pub last_exit: Option<ExitInfo>,
    /// Lines on the child's stdout that were not protocol messages.
    pub garbage_lines: u64,
}

struct Session {
    generation: u64,
    pid: u32,
    started: Instant,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    last_activity: Mutex<Instant>,
    /// Cancelled to close the child's stdin.
    close_stdin: CancellationToken,
    /// Cancelled once the child is gone: a call that registers after it must not
    /// wait for this child.
    gone: CancellationToken,
}

#[derive(Clone)]
struct Snapshot {
    state: State,
    session: Option<Arc<Session>>,
}

enum Outcome {
    Done(Result<Box<RawValue>, CallError>),
    Replay,
}

struct Pending {
    generation: u64,
    tx: oneshot::Sender<Outcome>,
    progress: Option<ProgressFn>,
    idempotent: bool,
}

struct Shared {
    config: Config,
    spawner: child::Spawner,
    snapshot: watch::Sender<Snapshot>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    events: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
    notifications: broadcast::Sender<Notification>,
    stop: CancellationToken,
    stopped: CancellationToken,
    waiting: AtomicUsize,
    restarts: AtomicU64,
    last_exit: Mutex<Option<ExitInfo>>,
    created: Instant,
    garbage: AtomicU64,
}

/// Events kept for `history()`.
const HISTORY: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn emit(&self, event: EventKind, fill: impl FnOnce(&mut Event)) {
        let mut e = Event {
            event,
            pid: None,
            exit_code: None,
            signal: None,
            attempt: None,
            delay_ms: None,
            reason: None,
            rss_bytes: None,
            at_ms: self.created.elapsed().as_millis() as u64,
        };
        fill(&mut e);
        tracing::info!(event = ?e.event, pid = e.pid, reason = e.reason.as_deref(), "supervisor event");
        let mut h = lock(&self.history);
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(e.clone());
        let _ = self.events.send(e);
    }

    fn set_state(&self, state: State, session: Option<Arc<Session>>) {
        self.snapshot.send_replace(Snapshot { state, session });
    }

    /// Ends every call of `generation`: replays idempotent ones, fails the others.
    fn end_generation(&self, generation: u64, error: &CallError) {
        let ended: Vec<Pending> = {
            let mut map = lock(&self.pending);
            let ids: Vec<u64> = map
                .iter()
                .filter(|(_, p)| p.generation == generation)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| map.remove(&id)).collect()
        };
        for p in ended {
            let outcome = if p.idempotent {
                Outcome::Replay
            } else {
                Outcome::Done(Err(error.clone()))
            };
            let _ = p.tx.send(outcome);
        }
    }
}

/// A running supervisor. Cheap to clone; the child is stopped by [`Supervisor::shutdown`]
/// (and killed, through its parent-death signal, if this process dies).
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

#[derive(Deserialize)]
struct IncomingError {
    code: i64,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<IncomingError>,
}

/// Removes a call's pending entry and tells the child to stop it, unless it finished.
struct CallGuard {
    shared: Arc<Shared>,
    id: u64,
    session: Arc<Session>,
    finished: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if lock(&self.shared.pending).remove(&self.id).is_some() {
            let msg = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": self.id}});
            let mut line = msg.to_string().into_bytes();
            line.push(b'\n');
            let _ = self.session.tx.send(line);
        }
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);
impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Supervisor {
    /// Starts supervising. Must be called inside a tokio runtime.
    ///
    /// Errors: the spawner thread could not be started.
    pub fn spawn(config: Config) -> std::io::Result<Supervisor> {
        let (snapshot, _) = watch::channel(Snapshot {
            state: State::Starting,
            session: None,
        });
        let shared = Arc::new(Shared {
            spawner: child::Spawner::start()?,
            config,
            snapshot,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            events: broadcast::channel(1024).0,
            history: Mutex::new(VecDeque::new()),
            notifications: broadcast::channel(4096).0,
            stop: CancellationToken::new(),
            stopped: CancellationToken::new(),
            waiting: AtomicUsize::new(0),
            restarts: AtomicU64::new(0),
            last_exit: Mutex::new(None),
            created: Instant::now(),
            garbage: AtomicU64::new(0),
        });
        let c = &shared.config;
        tracing::info!(
            rlimit_nofile = ?c.child.max_open_files,
            rlimit_as = ?c.child.max_address_space,
            max_rss = ?c.max_rss,
            "supervising {:?}: process group on, parent-death signal on (Linux), stdin-EOF exit, RSS watch {}",
            c.child.program,
            if c.max_rss.is_some() { "on" } else { "off" }
        );
        tokio::spawn(manage(shared.clone()));
        Ok(Supervisor { shared })
    }

    /// Calls `method` and deserializes the result.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
        options: CallOptions,
    ) -> Result<R, CallError> {
        let params = serde_json::value::to_raw_value(&params)
            .map_err(|e| CallError::Protocol(format!("params: {e}")))?;
        let raw = self.call_raw(method, Some(params), options).await?;
        serde_json::from_str(raw.get()).map_err(|e| CallError::Protocol(format!("result: {e}")))
    }

    /// Calls `method` with raw params (an object or array) and returns the raw result.
    /// Dropping the future cancels the call (`notifications/cancelled` to the child).
    pub async fn call_raw(
        &self,
        method: &str,
        params: Option<Box<RawValue>>,
        options: CallOptions,
    ) -> Result<Box<RawValue>, CallError> {
        let deadline = options.timeout.map(|t| Instant::now() + t);
        let mut replays = 0;
        loop {
            let session = self.ready_session(deadline, options.timeout).await?;
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            lock(&self.shared.pending).insert(
                id,
                Pending {
                    generation: session.generation,
                    tx,
                    progress: options.on_progress.clone(),
                    idempotent: options.idempotent && replays < self.shared.config.replay_budget,
                },
            );
            if session.gone.is_cancelled() {
                // The child died between our look and our registration: this call was
                // never written; it goes to the next child.
                lock(&self.shared.pending).remove(&id);
                tokio::task::yield_now().await;
                continue;
            }
            let mut guard = CallGuard {
                shared: self.shared.clone(),
                id,
                session: session.clone(),
                finished: false,
            };
            let line = request_line(id, method, params.as_deref(), &options, deadline)
                .map_err(CallError::Protocol)?;
            // If the child is gone, its generation's end answers this call.
            let _ = session.tx.send(line);
            let outcome = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx).await {
                    Ok(r) => r,
                    Err(_) => return Err(CallError::Timeout(options.timeout.unwrap_or_default())),
                },
                None => rx.await,
            };
            guard.finished = true;
            match outcome {
                Ok(Outcome::Done(r)) => return r,
                Ok(Outcome::Replay) => {
                    replays += 1;
                    tracing::info!(
                        method,
                        replays,
                        "replaying an idempotent call on the next sidecar"
                    );
                }
                Err(_) => return Err(CallError::Unavailable("supervisor stopped".into())),
            }
        }
    }

    async fn ready_session(
        &self,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<Arc<Session>, CallError> {
        let mut rx = self.shared.snapshot.subscribe();
        let mut counted = None;
        loop {
            {
                let snap = rx.borrow_and_update();
                match snap.state {
                    State::Ready => {
                        if let Some(s) = &snap.session {
                            return Ok(s.clone());
                        }
                    }
                    State::GaveUp => {
                        return Err(CallError::Unavailable(
                            "the supervisor gave up restarting the sidecar".into(),
                        ));
                    }
                    State::Stopping | State::Stopped => {
                        return Err(CallError::Unavailable("the supervisor is stopped".into()));
                    }
                    State::Starting | State::Restarting => {}
                }
            }
            if counted.is_none() {
                let n = self.shared.waiting.fetch_add(1, Ordering::AcqRel);
                counted = Some(WaitingGuard(&self.shared.waiting));
                if n >= self.shared.config.max_waiting_calls {
                    return Err(CallError::Unavailable(format!(
                        "{n} calls already wait for the sidecar"
                    )));
                }
            }
            let changed = rx.changed();
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, changed).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(CallError::Unavailable("supervisor gone".into())),
                    Err(_) => return Err(CallError::Timeout(timeout.unwrap_or_default())),
                },
                None => {
                    if changed.await.is_err() {
                        return Err(CallError::Unavailable("supervisor gone".into()));
                    }
                }
            }
        }
    }

    /// Sends a notification to the current child (dropped if none is ready).
    pub fn notify(&self, method: &str, params: Option<&RawValue>) {
        let snap = self.shared.snapshot.borrow().clone();
        if let Some(s) = snap.session {
            let mut line = match params {
                Some(p) => format!(
                    "{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{}}}",
                    json!(method),
                    p.get()
                ),
                None => format!("{{\"jsonrpc\":\"2.0\",\"method\":{}}}", json!(method)),
            }
            .into_bytes();
            line.push(b'\n');
            let _ = s.tx.send(line);
        }
    }

    /// Live events.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The last events (at most 256), oldest first.
    pub fn history(&self) -> Vec<Event> {
        lock(&self.shared.history).iter().cloned().collect()
    }

    /// The child's notifications other than progress (`sidecar/ready`, ...).
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.shared.notifications.subscribe()
    }

    /// Current status.
    pub fn status(&self) -> Status {
        let snap = self.shared.snapshot.borrow().clone();
        Status {
            state: snap.state,
            pid: snap.session.as_ref().map(|s| s.pid),
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            uptime_ms: snap
                .session
                .as_ref()
                .map(|s| s.started.elapsed().as_millis() as u64),
            last_exit: lock(&self.shared.last_exit).clone(),
            garbage_lines: self.shared.garbage.load(Ordering::Relaxed),
        }
    }

    /// Waits until the child is ready (or the supervisor gave up / stopped).
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), CallError> {
        self.ready_session(Some(Instant::now() + timeout), Some(timeout))
            .await
            .map(|_| ())
    }

    /// Stops: `shutdown` request → drain → close stdin → `SIGTERM`+`SIGCONT` →
    /// `SIGKILL`; returns when the child is gone.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.stopped.cancelled().await;
    }
}

fn request_line(
    id: u64,
    method: &str,
    params: Option<&RawValue>,
    options: &CallOptions,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, String> {
    let mut meta = serde_json::Map::new();
    if let Some(p) = &options.priority {
        meta.insert("priority".into(), json!(p));
    }
    if let Some(d) = deadline {
        let left = d
            .saturating_duration_since(Instant::now())
            .as_millis()
            .max(1) as u64;
        meta.insert("timeoutMs".into(), json!(left));
    }
    if options.on_progress.is_some() {
        meta.insert("progressToken".into(), json!(id));
    }
    let params = match params {
        None if meta.is_empty() => None,
        None => Some(json!({ "_meta": meta }).to_string()),
        Some(p) if meta.is_empty() => Some(p.get().to_owned()),
        Some(p) => {
            let text = p.get().trim();
            if !text.starts_with('{') {
                return Err("params must be an object to carry _meta".into());
            }
            let rest = text[1..].trim_start();
            let sep = if rest.starts_with('}') { "" } else { "," };
            Some(format!("{{\"_meta\":{}{sep}{rest}", Value::Object(meta)))
        }
    };
    let mut line = match params {
        Some(p) => format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":{},\"params\":{p}}}",
            json!(method)
        ),
        None => format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":{}}}",
            json!(method)
        ),
    }
    .into_bytes();
    line.push(b'\n');
    Ok(line)
}

/// Reads lines of at most `max` bytes; longer ones are dropped (counted as garbage).
async fn read_lines<R: tokio::io::AsyncRead + Unpin>(
    r: R,
    max: usize,
    mut on_line: impl FnMut(Result<&[u8], usize>),
) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut line = Vec::new();
    let mut dropping = false;
    loop {
        let buf = match r.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(b) => b,
        };
        let (chunk, end) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !dropping {
            if line.len() + chunk.len() > max {
                dropping = true;
                on_line(Err(line.len() + chunk.len()));
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = end.unwrap_or(buf.len());
        r.consume(consumed);
        if end.is_some() {
            if !dropping {
                on_line(Ok(&line));
            }
            line.clear();
            dropping = false;
        }
    }
}

fn deliver(shared: &Shared, session: &Session, line: &[u8]) {
    *lock(&session.last_activity) = Instant::now();
    let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
    if trimmed.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let msg: Incoming<'_> = match serde_json::from_slice(trimmed) {
        Ok(m) => m,
        Err(_) => {
            let n = shared.garbage.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    garbage_lines = n,
                    line = %String::from_utf8_lossy(&trimmed[..trimmed.len().min(200)]),
                    "sidecar wrote a line that is not JSON on stdout; ignored"
                );
            }
            return;
        }
    };
    if let Some(method) = msg.method {
        if method == "notifications/progress" {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct P {
                progress_token: Value,
                #[serde(flatten)]
                update: ProgressUpdate,
            }
            if let Some(p) = msg
                .params
                .and_then(|p| serde_json::from_str::<P>(p.get()).ok())
            {
                let cb = p.progress_token.as_u64().and_then(|id| {
                    lock(&shared.pending)
                        .get(&id)
                        .filter(|c| c.generation == session.generation)
                        .and_then(|c| c.progress.clone())
                });
                if let Some(cb) = cb {
                    cb(p.update);
                }
            }
            return;
        }
        let params: Arc<RawValue> = msg
            .params
            .map(|p| Arc::from(p.to_owned()))
            .unwrap_or_else(|| Arc::from(RawValue::from_string("null".into()).expect("null")));
        let _ = shared.notifications.send(Notification {
            method,
            params,
            generation: session.generation,
        });
        return;
    }
    let Some(id) = msg.id.as_ref().and_then(Value::as_u64) else {
        shared.garbage.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let pending = {
        let mut map = lock(&shared.pending);
        match map.get(&id) {
            Some(p) if p.generation == session.generation => map.remove(&id),
            _ => None,
        }
    };
    let Some(p) = pending else {
        return; // cancelled, timed out, or not ours
    };
    let result = match (msg.result, msg.error) {
        (Some(r), None) => Ok(r.to_owned()),
        (_, Some(e)) => Err(CallError::Server {
            code: e.code,
            kind: e
                .data
                .as_ref()
                .and_then(|d| d.get("kind"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            message: e.message,
            data: e.data,
        }),
        (None, None) => Err(CallError::Protocol(
            "response without result or error".into(),
        )),
    };
    let _ = p.tx.send(Outcome::Done(result));
}

enum End {
    Exited(std::process::ExitStatus),
    Killed { reason: String, memory: Option<u64> },
    Stop,
}

fn rss_of(sys: &mut sysinfo::System, pid: u32) -> u64 {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map_or(0, |p| p.memory())
}

/// One internal call (health, shutdown) on `session`, bypassing readiness.
async fn internal_call(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    method: &str,
    timeout: Duration,
) -> Result<Box<RawValue>, CallError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(
        id,
        Pending {
            generation: session.generation,
            tx,
            progress: None,
            idempotent: false,
        },
    );
    let mut guard = CallGuard {
        shared: shared.clone(),
        id,
        session: session.clone(),
        finished: false,
    };
    let line = request_line(id, method, None, &CallOptions::default(), None)
        .map_err(CallError::Protocol)?;
    let _ = session.tx.send(line);
    let r = tokio::time::timeout(timeout, rx).await;
    guard.finished = r.is_ok();
    match r {
        Ok(Ok(Outcome::Done(r))) => r,
        Ok(_) => Err(CallError::Unavailable("sidecar gone".into())),
        Err(_) => {
            // Leave no pending entry behind, but do not send a cancellation for health.
            lock(&shared.pending).remove(&id);
            guard.finished = true;
            Err(CallError::Timeout(timeout))
        }
    }
}

async fn manage(shared: Arc<Shared>) {
    let mut policy = RestartState::new(shared.config.restart.clone());
    let mut generation = 0u64;
    loop {
        generation += 1;
        shared.set_state(State::Starting, None);
        let started = Instant::now();
        let (end, ready, pid, tail) = match shared.spawner.spawn(shared.config.child.clone()).await
        {
            Ok(child) => run_child(&shared, child, generation, started).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn the sidecar");
                (
                    End::Killed {
                        reason: format!("spawn failed: {e}"),
                        memory: None,
                    },
                    false,
                    None,
                    Vec::new(),
                )
            }
        };
        let (code, signal, reason, memory) = match &end {
            End::Exited(st) => {
                let (c, s) = child::describe(st);
                (
                    c,
                    s,
                    if s.is_some() {
                        "killed by a signal".to_owned()
                    } else {
                        "exited".to_owned()
                    },
                    None,
                )
            }
            End::Killed { reason, memory } => (None, Some(9), reason.clone(), *memory),
            End::Stop => (None, None, "stopped".to_owned(), None),
        };
        let error = match memory {
            Some(rss) => CallError::MemoryLimit {
                rss_bytes: rss,
                limit_bytes: shared.config.max_rss.unwrap_or(0),
            },
            None => CallError::SidecarExited {
                code,
                signal,
                reason: reason.clone(),
                stderr_tail: tail,
            },
        };
        shared.end_generation(generation, &error);
        if let End::Stop = end {
            shared.set_state(State::Stopped, None);
            fail_all(&shared, "the supervisor is stopped");
            shared.emit(EventKind::Stopped, |e| e.pid = pid);
            shared.stopped.cancel();
            return;
        }
        *lock(&shared.last_exit) = Some(ExitInfo {
            code,
            signal,
            reason: reason.clone(),
        });
        shared.emit(EventKind::Exited, |e| {
            e.pid = pid;
            e.exit_code = code;
            e.signal = signal;
            e.reason = Some(reason.clone());
        });
        let failure = !(code == Some(0) && memory.is_none());
        match policy.on_exit(Instant::now(), started, ready, failure) {
            Decision::Restart { delay, attempt } => {
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                shared.set_state(State::Restarting, None);
                shared.emit(EventKind::Restarting, |e| {
                    e.attempt = Some(attempt);
                    e.delay_ms = Some(delay.as_millis() as u64);
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.stop.cancelled() => {
                        shared.set_state(State::Stopped, None);
                        fail_all(&shared, "the supervisor is stopped");
                        shared.emit(EventKind::Stopped, |_| {});
                        shared.stopped.cancel();
                        return;
                    }
                }
            }
            Decision::Stop => {
                shared.set_state(State::Stopped, None);
                fail_all(
                    &shared,
                    "the sidecar exited and the policy does not restart it",
                );
                shared.emit(EventKind::Stopped, |e| {
                    e.reason = Some("not restarted".into())
                });
                shared.stopped.cancel();
                return;
            }
            Decision::GiveUp { reason } => {
                shared.set_state(State::GaveUp, None);
                fail_all(&shared, "the supervisor gave up restarting the sidecar");
                shared.emit(EventKind::GaveUp, |e| {
                    e.reason = Some(match reason {
                        GiveUpReason::Intensity => "restart intensity exceeded".into(),
                        GiveUpReason::NeverReady => "the sidecar never became ready".into(),
                    })
                });
                // Stay given up until shutdown.
                shared.stop.cancelled().await;
                shared.emit(EventKind::Stopped, |_| {});
                shared.stopped.cancel();
                return;
            }
        }
    }
}

/// Fails every pending call (no child will answer them).
fn fail_all(shared: &Shared, why: &str) {
    let all: Vec<Pending> = lock(&shared.pending).drain().map(|(_, p)| p).collect();
    for p in all {
        let _ =
            p.tx.send(Outcome::Done(Err(CallError::Unavailable(why.to_owned()))));
    }
}

/// Runs one child until it ends. Returns how, whether it became ready, its pid and
/// its stderr tail.
async fn run_child(
    shared: &Arc<Shared>,
    mut child: tokio::process::Child,
    generation: u64,
    started: Instant,
) -> (End, bool, Option<u32>, Vec<String>) {
    let pid = child.id().unwrap_or(0);
    shared.emit(EventKind::Started, |e| e.pid = Some(pid));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));

    // stderr: always drained, into tracing and the ring buffer.
    if let Some(mut err) = stderr {
        let tail = tail.clone();
        let keep = shared.config.stderr_lines;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut partial = Vec::new();
            loop {
                let n = match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                partial.extend_from_slice(&buf[..n]);
                while let Some(i) = memchr::memchr(b'\n', &partial) {
                    let line: Vec<u8> = partial.drain(..=i).collect();
                    push_tail(&tail, keep, &line[..line.len() - 1]);
                }
                if partial.len() > 4096 {
                    push_tail(&tail, keep, &partial);
                    partial.clear();
                }
            }
        });
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let session = Arc::new(Session {
        generation,
        pid,
        started,
        tx,
        last_activity: Mutex::new(Instant::now()),
        close_stdin: CancellationToken::new(),
        gone: CancellationToken::new(),
    });

    // stdin writer; `close_stdin` closes it.
    let close = session.close_stdin.clone();
    let writer = stdin.map(|mut stdin| {
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    l = rx.recv() => match l {
                        Some(l) => l,
                        None => break,
                    },
                    _ = close.cancelled() => break,
                };
                let mut batch = line;
                while let Ok(more) = rx.try_recv() {
                    batch.extend_from_slice(&more);
                    if batch.len() > 1 << 20 {
                        break;
                    }
                }
                if stdin.write_all(&batch).await.is_err() {
                    break;
                }
                let _ = stdin.flush().await;
            }
            drop(stdin);
        })
    });

    // stdout reader.
    let (ready_tx, mut ready_rx) = oneshot::channel::<()>();
    let reader = stdout.map(|out| {
        let shared = shared.clone();
        let session = session.clone();
        let max = shared.config.max_line_bytes;
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            read_lines(out, max, |line| match line {
                Ok(line) => {
                    if ready_tx.is_some()
                        && memchr::memmem::find(line, b"\"sidecar/ready\"").is_some()
                        && let Some(t) = ready_tx.take()
                    {
                        let _ = t.send(());
                    }
                    deliver(&shared, &session, line);
                }
                Err(len) => {
                    shared.garbage.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(len, "sidecar wrote an over-long line on stdout; dropped");
                }
            })
            .await;
        })
    });

    let tail_now = |t: &Arc<Mutex<VecDeque<String>>>| lock(t).iter().cloned().collect::<Vec<_>>();
    let kill = |child: &mut tokio::process::Child| {
        signal_group_kill(pid);
        let _ = child.start_kill();
    };

    // Wait for readiness.
    let mut ready = false;
    let end = tokio::select! {
        r = &mut ready_rx => {
            if r.is_ok() {
                ready = true;
                None
            } else {
                // stdout closed before ready: wait for the exit status.
                Some(match child.wait().await {
                    Ok(st) => End::Exited(st),
                    Err(e) => End::Killed { reason: format!("wait failed: {e}"), memory: None },
                })
            }
        }
        st = child.wait() => Some(match st {
            Ok(st) => End::Exited(st),
            Err(e) => End::Killed { reason: format!("wait failed: {e}"), memory: None },
        }),
        _ = tokio::time::sleep(shared.config.start_timeout) => {
            kill(&mut child);
            let _ = child.wait().await;
            Some(End::Killed { reason: "start timeout: no sidecar/ready".into(), memory: None })
        }
        _ = shared.stop.cancelled() => {
            kill(&mut child);
            let _ = child.wait().await;
            Some(End::Stop)
        }
    };
    let end = match end {
        Some(e) => e,
        None => {
            shared.set_state(State::Ready, Some(session.clone()));
            shared.emit(EventKind::Ready, |e| e.pid = Some(pid));
            serve_child(shared, &mut child, &session).await
        }
    };
    // Not ready any more: new calls wait for the next child.
    session.gone.cancel();
    if shared.snapshot.borrow().state == State::Ready {
        shared.set_state(State::Starting, None);
    }
    if let Some(w) = writer {
        w.abort();
    }
    // Let the reader deliver what the child wrote before it died, then stop it.
    if let Some(r) = reader {
        let _ = tokio::time::timeout(Duration::from_millis(200), r).await;
    }
    let tail = tail_now(&tail);
    (end, ready, Some(pid), tail)
}

fn push_tail(tail: &Mutex<VecDeque<String>>, keep: usize, line: &[u8]) {
    let text = String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned();
    tracing::info!(target: "sidecar", "{text}");
    let mut t = lock(tail);
    if t.len() >= keep.max(1) {
        t.pop_front();
    }
    t.push_back(text);
}

fn signal_group_kill(pid: u32) {
    child::signal_group(pid, Signal::KILL);
}

/// Serves a ready child until it exits, hangs, goes over its memory limit or we stop.
async fn serve_child(
    shared: &Arc<Shared>,
    child: &mut tokio::process::Child,
    session: &Arc<Session>,
) -> End {
    let cfg = &shared.config;
    let pid = session.pid;
    let (hung_tx, mut hung_rx) = mpsc::channel::<String>(1);
    // Checks go out every `health_interval` whatever the previous one is doing, so a
    // hang is seen within `interval × failures + timeout`.
    let health = {
        let shared = shared.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let cfg = &shared.config;
            let mut tick = tokio::time::interval(cfg.health_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await; // the first tick is immediate: start one interval in
            let mut checks = tokio::task::JoinSet::new();
            let mut misses = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let (shared, session) = (shared.clone(), session.clone());
                        checks.spawn(async move {
                            let asked = Instant::now();
                            let ok = internal_call(&shared, &session, "health", shared.config.health_timeout)
                                .await
                                .is_ok();
                            (asked, ok)
                        });
                    }
                    Some(Ok((asked, ok))) = checks.join_next(), if !checks.is_empty() => {
                        if ok {
                            misses = 0;
                            continue;
                        }
                        // A child busy writing (progress, results) is not hung.
                        if *lock(&session.last_activity) > asked {
                            continue;
                        }
                        misses += 1;
                        shared.emit(EventKind::Unhealthy, |e| {
                            e.pid = Some(session.pid);
                            e.reason = Some(format!(
                                "health check missed ({misses}/{})",
                                cfg.health_failures
                            ));
                        });
                        if misses >= cfg.health_failures {
                            let _ = hung_tx
                                .send(format!("hung: {misses} health checks missed"))
                                .await;
                            return;
                        }
                    }
                }
            }
        })
    };
    let mut sys = sysinfo::System::new();
    let mut rss_tick = tokio::time::interval(cfg.rss_interval);
    rss_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            st = child.wait() => break match st {
                Ok(st) => End::Exited(st),
                Err(e) => End::Killed { reason: format!("wait failed: {e}"), memory: None },
            },
            reason = hung_rx.recv() => {
                let reason = reason.unwrap_or_else(|| "hung".into());
                signal_group_kill(pid);
                let _ = child.wait().await;
                break End::Killed { reason, memory: None };
            }
            _ = rss_tick.tick(), if cfg.max_rss.is_some() => {
                let rss = rss_of(&mut sys, pid);
                let limit = cfg.max_rss.unwrap_or(u64::MAX);
                if rss > limit {
                    shared.emit(EventKind::LimitExceeded, |e| {
                        e.pid = Some(pid);
                        e.rss_bytes = Some(rss);
                        e.reason = Some(format!("resident memory {rss} > limit {limit} bytes"));
                    });
                    signal_group_kill(pid);
                    let _ = child.wait().await;
                    break End::Killed { reason: "memory limit".into(), memory: Some(rss) };
                }
            }
            _ = shared.stop.cancelled() => {
                stop_child(shared, child, session).await;
                break End::Stop;
            }
        }
    };
    health.abort();
    end
}

/// `shutdown` → drain → close stdin → SIGTERM+SIGCONT → SIGKILL.
async fn stop_child(
    shared: &Arc<Shared>,
    child: &mut tokio::process::Child,
    session: &Arc<Session>,
) {
    let cfg = &shared.config;
    shared.set_state(State::Stopping, None);
    let pid = session.pid;
    let graceful = async {
        let _ = internal_call(shared, session, "shutdown", cfg.stop_timeout).await;
        child.wait().await
    };
    if tokio::time::timeout(cfg.stop_timeout, graceful)
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sidecar did not stop after shutdown; closing stdin");
    session.close_stdin.cancel();
    if tokio::time::timeout(cfg.term_timeout, child.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sending SIGTERM to the sidecar's process group");
    child::signal_group(pid, Signal::TERM);
    child::signal_group(pid, Signal::CONT);
    if tokio::time::timeout(cfg.term_timeout, child.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sending SIGKILL to the sidecar's process group");
    signal_group_kill(pid);
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_merged_into_params() {
        let opts = CallOptions {
            priority: Some("high".into()),
            ..CallOptions::default()
        };
        let p = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let line = request_line(7, "m", Some(&p), &opts, None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["params"], json!({"_meta": {"priority": "high"}, "a": 1}));
        let empty = RawValue::from_string("{}".into()).unwrap();
        let line = request_line(8, "m", Some(&empty), &opts, None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["params"], json!({"_meta": {"priority": "high"}}));
        let line = request_line(9, "m", None, &CallOptions::default(), None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert!(v.get("params").is_none());
    }
}
