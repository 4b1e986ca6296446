//! `quarry serve`: the [`Handler`] of a [`Connection`] that answers with the method
//! table ([`Router`]) — control methods at once, the others through the bounded
//! priority queue, with deadlines, cancellation, progress and the drain of
//! PROTOCOL.md §7.
//!
//! Every admitted request becomes one task that owns its [`Responder`]; every path out
//! of that task (result, error, cancel, deadline, panic, shutdown) answers through it,
//! and a responder dropped unanswered answers `-32603` itself, so each id gets exactly
//! one response (§2).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use quarry_protocol::{ErrorKind, Meta, Outgoing, RpcError, split_meta};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{
    Call, Connection, Handler, InFlightGuard, Responder, ShutdownReplies, Sink,
};
use super::control::{
    HealthResult, HealthStatus, MessageStats, PROTOCOL_VERSION, QueueStats, ReadyParams,
    StatsResult, rss_bytes,
};
use super::router::{self, Entry, Gate, Notifier, Progress, RequestContext, Router, ServerState};
use super::slots::{Admission, Permit, Slots, Ticket};
use super::stats::{Stats, UNKNOWN_METHOD};
use super::writer::{Outbox, spawn_writer};

/// Server limits and switches (`quarry serve` flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Requests that run at once (at least 1).
    pub max_concurrency: usize,
    /// Requests that may wait for a slot; more are refused with `overloaded`.
    pub max_queue: usize,
    /// Longest accepted line in bytes, excluding the newline.
    pub max_message_bytes: usize,
    /// How long a drain waits for in-flight work before answering it `shutting_down`.
    pub shutdown_grace: Duration,
    /// The version reported in `sidecar/ready` and `health`.
    pub version: String,
    /// The local gRPC endpoint announced in `sidecar/ready` (`unix:/path`), if any.
    pub endpoint: Option<String>,
    /// Worker slots and queue shared with another transport (gRPC), so that both obey
    /// one bound; `None`: the server makes its own from the limits above.
    pub slots: Option<Arc<Slots>>,
    /// Request figures shared with another transport (gRPC), so that `stats` shows both;
    /// `None`: the server keeps its own.
    pub stats: Option<Arc<Stats>>,
    /// This process's data-folder role for `health` (GRPC.md §6), if it has one.
    pub role: Option<RoleReport>,
}

/// Reports `(role, ownerPid)` for `health`: `("owner", own pid)`, `("follower", the
/// owner's pid)`, or nothing yet.
#[derive(Clone)]
pub struct RoleReport(pub Arc<dyn Fn() -> Option<(&'static str, u32)> + Send + Sync>);

impl std::fmt::Debug for RoleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RoleReport").field(&(self.0)()).finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_concurrency: 64,
            max_queue: 1024,
            max_message_bytes: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_millis(5000),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            endpoint: None,
            slots: None,
            stats: None,
            role: None,
        }
    }
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(value).map_err(|e| RpcError::internal(e.to_string()))
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

enum Stage {
    Run(Permit),
    Queue(Ticket),
}

/// An admitted request or notification, ready to become a task.
struct Job {
    handler: Arc<router::Handler>,
    params: Option<Box<RawValue>>,
    meta: Meta,
    received: Instant,
    stage: Stage,
    cancel: CancellationToken,
    progress: Progress,
    /// `None` for a notification.
    responder: Option<Responder>,
    /// Keeps the request's id in flight until the job ends.
    _in_flight: Option<InFlightGuard>,
}

struct Server {
    config: ServerConfig,
    router: Router,
    outbox: Outbox,
    slots: Arc<Slots>,
    stats: Arc<Stats>,
    shutting_down: AtomicBool,
    /// Cancelled when the grace period ends: what still runs is answered `shutting_down`.
    abort: CancellationToken,
    /// Cancelled when the drain is complete and the server may exit.
    finished: CancellationToken,
    /// Tasks (requests and notifications) not yet finished.
    active: AtomicUsize,
    idle: Notify,
    /// `shutdown` requests waiting for the drain.
    shutdown_replies: ShutdownReplies,
    started: Instant,
}

struct ActiveGuard<'a>(&'a Server);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Handler for Server {
    fn responder(
        &self,
        id: Option<Box<RawValue>>,
        sink: Sink,
        method: Option<&str>,
        received: Instant,
    ) -> Responder {
        let name = method
            .and_then(|m| self.router.entry(m))
            .map_or(UNKNOWN_METHOD, |(name, _)| name);
        Responder::new(id, sink).recorded(self.stats.clone(), name, received)
    }

    fn rejected(&self, error: &RpcError) {
        let counter = match error.kind {
            ErrorKind::ParseError => &self.stats.parse_errors,
            ErrorKind::MessageTooLarge => &self.stats.too_large,
            _ => &self.stats.invalid_requests,
        };
        Stats::bump(counter);
    }

    fn notified(&self) {
        Stats::bump(&self.stats.notifications);
    }

    fn request(self: &Arc<Self>, call: Call) {
        let Call {
            method,
            params,
            received,
            mut responder,
            in_flight,
        } = call;
        let handler = match self.router.entry(&method) {
            None | Some((_, Entry::Documented)) => {
                return responder.send(Err(RpcError::method_not_found(&method)));
            }
            // Answered at once, also while the queue is full or the server drains.
            Some((_, Entry::Control(h))) => {
                let answer = split_meta(params).and_then(|(p, _)| h(p.as_deref(), &**self));
                return responder.send(answer);
            }
            Some((_, Entry::Queued(h))) => h,
        };
        if self.is_shutting_down() {
            return responder.send(Err(RpcError::new(
                ErrorKind::ShuttingDown,
                "the server is shutting down",
            )));
        }
        let (params, meta) = match split_meta(params) {
            Ok(v) => v,
            Err(e) => return responder.send(Err(e)),
        };
        let Some(stage) = self.admit(&meta) else {
            let limit = self.config.max_queue;
            return responder.send(Err(RpcError::new(
                ErrorKind::Overloaded,
                format!("the queue is full ({limit} requests waiting)"),
            )
            .with("queueLimit", limit)));
        };
        let progress = match &meta.progress_token {
            Some(token) => {
                let gate = Arc::new(Gate::default());
                responder.gate(gate.clone());
                Progress::new(token.clone(), gate, self.outbox.clone())
            }
            None => Progress::default(),
        };
        self.spawn_job(Job {
            handler,
            params,
            meta,
            received,
            stage,
            cancel: in_flight.cancel.clone(),
            progress,
            responder: Some(responder),
            _in_flight: Some(in_flight),
        });
    }

    fn notification(
        self: &Arc<Self>,
        method: String,
        params: Option<Box<RawValue>>,
        received: Instant,
    ) {
        if self.is_shutting_down() {
            return;
        }
        let Some((name, handler)) = self.router.handler(&method) else {
            tracing::debug!(method, "ignoring unknown notification");
            return;
        };
        let Ok((params, meta)) = split_meta(params) else {
            tracing::debug!(method, "ignoring notification with invalid _meta");
            return;
        };
        let Some(stage) = self.admit(&meta) else {
            tracing::warn!(method = name, "queue full: notification dropped");
            return;
        };
        self.spawn_job(Job {
            handler,
            params,
            meta,
            received,
            stage,
            cancel: CancellationToken::new(),
            progress: Progress::default(),
            responder: None,
            _in_flight: None,
        });
    }

    /// Starts the drain (PROTOCOL.md §7) once; `reply` is a `shutdown` request to
    /// answer when it is done.
    fn shutdown(self: &Arc<Self>, reply: Option<Responder>) {
        if let Some(r) = reply {
            self.shutdown_replies.push(r);
        }
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(
            grace_ms = self.config.shutdown_grace.as_millis() as u64,
            "shutting down: draining"
        );
        let server = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = server.wait_idle() => {}
                _ = tokio::time::sleep(server.config.shutdown_grace) => {
                    tracing::warn!("grace period over: answering what still runs with shutting_down");
                    server.abort.cancel();
                    server.wait_idle().await;
                }
            }
            server.shutdown_replies.answer_all();
            server.finished.cancel();
        });
    }
}

impl ServerState for Server {
    fn health(&self) -> HealthResult {
        let occ = self.slots.occupancy();
        let max_queue = self.config.max_queue;
        let crowded = max_queue > 0 && occ.queued * 10 >= max_queue * 9;
        let role = self.config.role.as_ref().and_then(|r| (r.0)());
        HealthResult {
            status: if self.is_shutting_down() || crowded {
                HealthStatus::Degraded
            } else {
                HealthStatus::Ok
            },
            uptime_ms: self.started.elapsed().as_millis() as u64,
            in_flight: occ.running,
            queued: occ.queued,
            rss_bytes: rss_bytes(),
            version: self.config.version.clone(),
            role: role.map(|(r, _)| r.to_owned()),
            owner_pid: role.map(|(_, pid)| pid),
        }
    }

    fn stats(&self) -> StatsResult {
        let occ = self.slots.occupancy();
        let (max_concurrency, max_queue) = self.slots.limits();
        let s = &self.stats;
        StatsResult {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            rss_bytes: rss_bytes(),
            queue: QueueStats {
                running: occ.running,
                queued: occ.queued,
                peak_queued: occ.peak_queued,
                max_concurrency,
                max_queue,
                overloaded: Stats::get(&s.overloaded),
            },
            messages: MessageStats {
                parse_errors: Stats::get(&s.parse_errors),
                too_large: Stats::get(&s.too_large),
                invalid_requests: Stats::get(&s.invalid_requests),
                notifications: Stats::get(&s.notifications),
            },
            methods: s.methods(),
        }
    }
}

impl Server {
    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A slot now or a place in the queue; `None` (counted) when the queue is full.
    fn admit(&self, meta: &Meta) -> Option<Stage> {
        match self.slots.admit(meta.priority) {
            Admission::Run(p) => Some(Stage::Run(p)),
            Admission::Queued(t) => Some(Stage::Queue(t)),
            Admission::Full => {
                self.stats.refused();
                None
            }
        }
    }

    fn spawn_job(self: &Arc<Self>, job: Job) {
        self.active.fetch_add(1, Ordering::AcqRel);
        let server = self.clone();
        tokio::spawn(async move { server.run(job).await });
    }

    async fn run(self: Arc<Self>, job: Job) {
        let _active = ActiveGuard(&self);
        let Job {
            handler,
            params,
            meta,
            received,
            stage,
            cancel,
            progress,
            responder,
            _in_flight,
        } = job;
        let deadline = meta
            .timeout_ms
            .map(|ms| received + Duration::from_millis(ms));
        let timeout = |stage: &str| {
            RpcError::new(
                ErrorKind::Timeout,
                format!(
                    "deadline of {} ms passed while {stage}",
                    meta.timeout_ms.unwrap_or(0)
                ),
            )
            .with("timeoutMs", meta.timeout_ms.unwrap_or(0))
            .with("stage", stage)
        };
        let cancelled = || RpcError::new(ErrorKind::Cancelled, "cancelled by the host");
        let shutting_down = || {
            RpcError::new(
                ErrorKind::ShuttingDown,
                "the server shut down before the request finished",
            )
        };
        let outcome = async {
            let permit = match stage {
                Stage::Run(p) => p,
                Stage::Queue(mut ticket) => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(cancelled()),
                    _ = self.abort.cancelled() => return Err(shutting_down()),
                    _ = sleep_until_opt(deadline) => return Err(timeout("queued")),
                    p = ticket.wait() => p,
                },
            };
            let ctx = RequestContext {
                cancel: cancel.clone(),
                deadline,
                progress,
                notifier: Notifier::new(self.outbox.clone()),
                priority: meta.priority,
            };
            let work = AssertUnwindSafe(handler(params, ctx)).catch_unwind();
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(cancelled()),
                _ = self.abort.cancelled() => {
                    cancel.cancel();
                    Err(shutting_down())
                }
                _ = sleep_until_opt(deadline) => {
                    cancel.cancel();
                    Err(timeout("running"))
                }
                r = work => r.unwrap_or_else(|payload| {
                    Err(RpcError::internal(format!("handler panicked: {}", panic_message(&*payload))))
                }),
            };
            drop(permit);
            result
        }
        .await;
        // The id leaves the in-flight table before its response is written, so that a
        // host reusing it after the response is never told it is a duplicate.
        drop(_in_flight);
        if let Some(r) = responder {
            r.send(outcome);
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Serves JSON-RPC on `input`/`output` until shutdown, end of input or a signal, then
/// drains and returns. `router` holds every method (control methods included);
/// `shutdown` and cancellation are the connection's.
///
/// Errors: only failing to install the signal handlers.
pub async fn serve<R, W>(
    config: ServerConfig,
    router: Router,
    input: R,
    output: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let broken = CancellationToken::new();
    let (outbox, writer) = spawn_writer(output, broken.clone());
    let ready = ReadyParams {
        protocol_version: PROTOCOL_VERSION,
        version: config.version.clone(),
        pid: std::process::id(),
        methods: router.method_names(),
        endpoint: config.endpoint.clone(),
    };
    let server = Arc::new(Server {
        slots: config
            .slots
            .clone()
            .unwrap_or_else(|| Slots::new(config.max_concurrency, config.max_queue)),
        router,
        outbox: outbox.clone(),
        stats: config.stats.clone().unwrap_or_default(),
        shutting_down: AtomicBool::new(false),
        abort: CancellationToken::new(),
        finished: CancellationToken::new(),
        active: AtomicUsize::new(0),
        idle: Notify::new(),
        shutdown_replies: ShutdownReplies::new(),
        started: Instant::now(),
        config,
    });
    let connection = Connection::new(
        server.clone(),
        outbox.clone(),
        server.config.max_message_bytes,
    )?;
    if let Ok(params) = to_raw(&ready) {
        outbox.send(Outgoing::Notification {
            method: "sidecar/ready".into(),
            params,
        });
    }
    tracing::info!(pid = ready.pid, version = %ready.version, "ready");
    connection.run(input, broken, server.finished.clone()).await;
    outbox.close().await;
    let _ = writer.await;
    tracing::info!("stopped");
    Ok(())
}
