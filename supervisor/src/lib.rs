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
//!
//! The crate, one concern per file: [`config`](Config) (what to run and how),
//! `error` ([`CallError`]), `event` (events, state, status), `pending` (the
//! pending-call table), `io` (the child's stdin/stdout/stderr), `monitor` (health and
//! memory), `stop` (stop escalation), `restart` (the restart loop) and [`policy`]
//! (restart decisions); this file is the [`Supervisor`] facade.

mod child;
mod config;
mod error;
mod event;
mod io;
mod monitor;
mod pending;
pub mod policy;
mod restart;
mod shared;
mod stop;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use child::ChildSpec;
pub use config::{CallOptions, Config, ProgressFn};
pub use error::CallError;
pub use event::{Event, EventKind, ExitInfo, Notification, State, Status};
pub use policy::{Decision, GiveUpReason, RestartMode, RestartPolicy, RestartState};
pub use quarry_protocol::Priority;
pub use quarry_protocol::control::ProgressUpdate;

use io::request_line;
use pending::{CallGuard, Outcome, Pending, WaitingGuard};
use quarry_protocol::client::encode_notification;
use restart::manage;
use shared::{Session, Shared, Snapshot, lock};

/// A running supervisor. Cheap to clone; the child is stopped by [`Supervisor::shutdown`]
/// (and killed, through its parent-death signal, if this process dies).
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
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
            let mut line = Vec::new();
            encode_notification(method, params, &mut line);
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
