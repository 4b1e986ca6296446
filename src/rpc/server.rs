//! The JSON-RPC server: reader loop, dispatch, scheduling, deadlines, cancellation and
//! lifecycle (PROTOCOL.md §1–8).
//!
//! Every request that is admitted becomes one task that owns a [`Responder`]; every
//! path out of that task (result, error, cancel, deadline, panic, shutdown) answers
//! through it, and a responder dropped unanswered answers `-32603` itself, so each id
//! gets exactly one response (§2).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use quarry_protocol::{
    ErrorKind, Frame, Id, IdKey, Line, LineCodec, Message, Meta, Outgoing, Request, Response,
    RpcError, cancel_target, decode_line, split_meta,
};

use super::control::{
    HealthResult, HealthStatus, MessageStats, PROTOCOL_VERSION, QueueStats, ReadyParams,
    StatsResult, rss_bytes,
};
use super::router::{Gate, Notifier, Progress, RequestContext, Router};
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
    /// Whether `debug/hang` is served (the other `debug/*` methods are registered on
    /// the router by [`crate::rpc::debug::register`]).
    pub debug_methods: bool,
    /// The version reported in `sidecar/ready` and `health`.
    pub version: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_concurrency: 64,
            max_queue: 1024,
            max_message_bytes: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_millis(5000),
            debug_methods: false,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// Where a response goes: straight to the writer, or into its batch's array.
#[derive(Clone)]
pub(crate) enum Sink {
    Direct(Outbox),
    Batch(Arc<Batch>),
}

impl Sink {
    /// Sink for the messages of one decoded line: a batch collector when the line is a
    /// batch owing responses, the writer otherwise.
    pub(crate) fn for_line(outbox: &Outbox, msgs: &[Message]) -> Sink {
        let owed = msgs
            .iter()
            .filter(|m| match m {
                Message::Request(r) => r.id.is_some(),
                Message::Invalid { .. } => true,
                Message::Response => false,
            })
            .count();
        if owed == 0 {
            Sink::Direct(outbox.clone())
        } else {
            Sink::Batch(Arc::new(Batch {
                outbox: outbox.clone(),
                state: Mutex::new((Vec::with_capacity(owed), owed)),
            }))
        }
    }

    /// Delivers one response.
    pub(crate) fn deliver(&self, response: Response) {
        match self {
            Sink::Direct(outbox) => outbox.send(Outgoing::Response(response)),
            Sink::Batch(batch) => batch.push(response),
        }
    }
}

/// Collects the responses of one batch and writes them as one array.
pub(crate) struct Batch {
    outbox: Outbox,
    state: Mutex<(Vec<Response>, usize)>,
}

impl Batch {
    fn push(&self, r: Response) {
        let mut g = lock(&self.state);
        g.0.push(r);
        g.1 -= 1;
        if g.1 == 0 {
            self.outbox.send(Outgoing::Batch(std::mem::take(&mut g.0)));
        }
    }
}

/// Owes exactly one response.
struct Responder {
    id: Option<Box<RawValue>>,
    sink: Sink,
    gate: Option<Arc<Gate>>,
    method: &'static str,
    received: Instant,
    stats: Arc<Stats>,
    answered: bool,
}

impl Responder {
    fn send(mut self, body: Result<Box<RawValue>, RpcError>) {
        self.answer(body);
    }

    fn answer(&mut self, body: Result<Box<RawValue>, RpcError>) {
        if self.answered {
            return;
        }
        self.answered = true;
        self.stats.record(
            self.method,
            body.as_ref().map(|_| ()).map_err(|e| e.kind),
            self.received.elapsed(),
        );
        let response = Response {
            id: self.id.take(),
            body,
        };
        match &self.gate {
            Some(gate) => gate.close_with(|| self.sink.deliver(response)),
            None => self.sink.deliver(response),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.answer(Err(RpcError::internal(
                "the request ended without a response (server bug)",
            )));
        }
    }
}

/// The wire form of results that carry nothing.
fn empty_result() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

fn to_raw<T: Serialize>(value: &T) -> Result<Box<RawValue>, RpcError> {
    serde_json::value::to_raw_value(value).map_err(|e| RpcError::internal(e.to_string()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    key: Option<IdKey>,
    handler: Arc<super::router::Handler>,
    params: Option<Box<RawValue>>,
    meta: Meta,
    received: Instant,
    stage: Stage,
    cancel: CancellationToken,
    progress: Progress,
    responder: Option<Responder>,
}

struct Server {
    config: ServerConfig,
    router: Router,
    outbox: Outbox,
    slots: Arc<Slots>,
    stats: Arc<Stats>,
    in_flight: Mutex<HashMap<IdKey, CancellationToken>>,
    shutting_down: AtomicBool,
    /// Cancelled when the grace period ends: what still runs is answered `shutting_down`.
    abort: CancellationToken,
    /// Cancelled when the drain is complete and the server may exit.
    finished: CancellationToken,
    /// Tasks (requests and notifications) not yet finished.
    active: AtomicUsize,
    idle: Notify,
    /// `shutdown` requests waiting for the drain; `None` once they were answered.
    pending_shutdown: Mutex<Option<Vec<Responder>>>,
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

impl Server {
    fn responder(
        &self,
        id: Option<Box<RawValue>>,
        sink: Sink,
        method: &'static str,
        received: Instant,
    ) -> Responder {
        Responder {
            id,
            sink,
            gate: None,
            method,
            received,
            stats: self.stats.clone(),
            answered: false,
        }
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    fn handle_frame(self: &Arc<Self>, frame: Frame, received: Instant) {
        let direct = || Sink::Direct(self.outbox.clone());
        match frame {
            Frame::TooLarge { len } => {
                Stats::bump(&self.stats.too_large);
                let err = RpcError::message_too_large(len, self.config.max_message_bytes);
                self.responder(None, direct(), UNKNOWN_METHOD, received)
                    .send(Err(err));
            }
            Frame::Line(bytes) => match decode_line(&bytes) {
                Line::Error(err) => {
                    if err.kind == ErrorKind::ParseError {
                        Stats::bump(&self.stats.parse_errors);
                    } else {
                        Stats::bump(&self.stats.invalid_requests);
                    }
                    self.responder(None, direct(), UNKNOWN_METHOD, received)
                        .send(Err(err));
                }
                Line::Single(msg) => self.handle_message(msg, received, direct()),
                Line::Batch(msgs) => {
                    let sink = Sink::for_line(&self.outbox, &msgs);
                    for msg in msgs {
                        self.handle_message(msg, received, sink.clone());
                    }
                }
            },
        }
    }

    fn handle_message(self: &Arc<Self>, msg: Message, received: Instant, sink: Sink) {
        match msg {
            Message::Response => {
                tracing::debug!("ignoring a response: this server sends no requests");
            }
            Message::Invalid { id, error } => {
                Stats::bump(&self.stats.invalid_requests);
                self.responder(id, sink, UNKNOWN_METHOD, received)
                    .send(Err(error));
            }
            Message::Request(Request {
                id: None,
                method,
                params,
            }) => {
                Stats::bump(&self.stats.notifications);
                self.handle_notification(&method, params, received);
            }
            Message::Request(Request {
                id: Some(id),
                method,
                params,
            }) => self.handle_request(id, &method, params, received, sink),
        }
    }

    fn handle_notification(
        self: &Arc<Self>,
        method: &str,
        params: Option<Box<RawValue>>,
        received: Instant,
    ) {
        match method {
            "notifications/cancelled" | "$/cancelRequest" => {
                match cancel_target(params.as_deref()) {
                    Some(key) => {
                        if let Some(token) = lock(&self.in_flight).get(&key) {
                            token.cancel();
                        }
                    }
                    None => tracing::debug!(method, "cancellation without a valid request id"),
                }
            }
            "shutdown" => self.begin_shutdown(None),
            _ => {
                if self.is_shutting_down() {
                    return;
                }
                let Some((name, handler)) = self.router.handler(method) else {
                    tracing::debug!(method, "ignoring unknown notification");
                    return;
                };
                let Ok((params, meta)) = split_meta(params) else {
                    tracing::debug!(method, "ignoring notification with invalid _meta");
                    return;
                };
                let stage = match self.slots.admit(meta.priority) {
                    Admission::Run(p) => Stage::Run(p),
                    Admission::Queued(t) => Stage::Queue(t),
                    Admission::Full => {
                        Stats::bump(&self.stats.overloaded);
                        tracing::warn!(method = name, "queue full: notification dropped");
                        return;
                    }
                };
                self.spawn_job(Job {
                    key: None,
                    handler,
                    params,
                    meta,
                    received,
                    stage,
                    cancel: CancellationToken::new(),
                    progress: Progress::default(),
                    responder: None,
                });
            }
        }
    }

    fn handle_request(
        self: &Arc<Self>,
        id: Id,
        method: &str,
        params: Option<Box<RawValue>>,
        received: Instant,
        sink: Sink,
    ) {
        let known = self.router.handler(method).map(|(name, _)| name);
        let stat_name = match method {
            "ping" => "ping",
            "health" => "health",
            "stats" => "stats",
            "shutdown" => "shutdown",
            "debug/hang" if self.config.debug_methods => "debug/hang",
            _ => known.unwrap_or(UNKNOWN_METHOD),
        };
        let Id { raw, key } = id;
        let mut responder = self.responder(Some(raw), sink, stat_name, received);
        if lock(&self.in_flight).contains_key(&key) {
            responder.send(Err(RpcError::new(
                ErrorKind::DuplicateId,
                "a request with this id is still in flight",
            )));
            return;
        }
        match stat_name {
            "ping" => return responder.send(Ok(empty_result())),
            "health" => return responder.send(to_raw(&self.health())),
            "stats" => return responder.send(to_raw(&self.stats())),
            "shutdown" => return self.begin_shutdown(Some(responder)),
            "debug/hang" => {
                tracing::warn!("debug/hang: not reading or answering anything for 10 minutes");
                // Blocks the runtime thread on purpose: reader, writer and workers all stop.
                std::thread::sleep(Duration::from_secs(600));
                return responder.send(Ok(empty_result()));
            }
            _ => {}
        }
        if self.is_shutting_down() {
            return responder.send(Err(RpcError::new(
                ErrorKind::ShuttingDown,
                "the server is shutting down",
            )));
        }
        let Some((_, handler)) = self.router.handler(method) else {
            return responder.send(Err(RpcError::method_not_found(method)));
        };
        let (params, meta) = match split_meta(params) {
            Ok(v) => v,
            Err(e) => return responder.send(Err(e)),
        };
        let stage = match self.slots.admit(meta.priority) {
            Admission::Run(p) => Stage::Run(p),
            Admission::Queued(t) => Stage::Queue(t),
            Admission::Full => {
                Stats::bump(&self.stats.overloaded);
                let limit = self.config.max_queue;
                return responder.send(Err(RpcError::new(
                    ErrorKind::Overloaded,
                    format!("the queue is full ({limit} requests waiting)"),
                )
                .with("queueLimit", limit)));
            }
        };
        let progress = match &meta.progress_token {
            Some(token) => {
                let gate = Arc::new(Gate::default());
                responder.gate = Some(gate.clone());
                Progress::new(token.clone(), gate, self.outbox.clone())
            }
            None => Progress::default(),
        };
        let cancel = CancellationToken::new();
        lock(&self.in_flight).insert(key.clone(), cancel.clone());
        self.spawn_job(Job {
            key: Some(key),
            handler,
            params,
            meta,
            received,
            stage,
            cancel,
            progress,
            responder: Some(responder),
        });
    }

    fn spawn_job(self: &Arc<Self>, job: Job) {
        self.active.fetch_add(1, Ordering::AcqRel);
        let server = self.clone();
        tokio::spawn(async move { server.run(job).await });
    }

    async fn run(self: Arc<Self>, job: Job) {
        let _active = ActiveGuard(&self);
        let Job {
            key,
            handler,
            params,
            meta,
            received,
            stage,
            cancel,
            progress,
            responder,
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
        if let Some(key) = key {
            lock(&self.in_flight).remove(&key);
        }
        if let Some(r) = responder {
            r.send(outcome);
        }
    }

    fn health(&self) -> HealthResult {
        let occ = self.slots.occupancy();
        let max_queue = self.config.max_queue;
        let crowded = max_queue > 0 && occ.queued * 10 >= max_queue * 9;
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

    /// Starts the drain (PROTOCOL.md §7) once; `responder` is a `shutdown` request to
    /// answer when it is done.
    fn begin_shutdown(self: &Arc<Self>, responder: Option<Responder>) {
        if let Some(r) = responder {
            let mut pending = lock(&self.pending_shutdown);
            match pending.as_mut() {
                Some(list) => list.push(r),
                None => r.send(Ok(empty_result())),
            }
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
            let waiting = lock(&server.pending_shutdown).take().unwrap_or_default();
            for r in waiting {
                r.send(Ok(empty_result()));
            }
            server.finished.cancel();
        });
    }
}

/// Serves JSON-RPC on `input`/`output` until shutdown, end of input or a signal, then
/// drains and returns. `router` holds the queued methods; `ping`, `health`, `stats`,
/// `shutdown`, cancellation and (with `debug_methods`) `debug/hang` are answered here.
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
    let mut methods = router.method_names();
    if config.debug_methods && !methods.iter().any(|m| m == "debug/hang") {
        methods.push("debug/hang".to_owned());
        methods.sort();
    }
    let ready = ReadyParams {
        protocol_version: PROTOCOL_VERSION,
        version: config.version.clone(),
        pid: std::process::id(),
        methods,
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = Arc::new(Server {
        slots: Slots::new(config.max_concurrency, config.max_queue),
        router,
        outbox: outbox.clone(),
        stats: Arc::new(Stats::default()),
        in_flight: Mutex::new(HashMap::new()),
        shutting_down: AtomicBool::new(false),
        abort: CancellationToken::new(),
        finished: CancellationToken::new(),
        active: AtomicUsize::new(0),
        idle: Notify::new(),
        pending_shutdown: Mutex::new(Some(Vec::new())),
        started: Instant::now(),
        config,
    });
    if let Ok(params) = to_raw(&ready) {
        outbox.send(Outgoing::Notification {
            method: "sidecar/ready".into(),
            params,
        });
    }
    tracing::info!(pid = ready.pid, version = %ready.version, "ready");
    let mut frames = FramedRead::with_capacity(
        input,
        LineCodec::new(server.config.max_message_bytes),
        64 * 1024,
    );
    let mut eof = false;
    let mut output_broken = false;
    loop {
        tokio::select! {
            biased;
            _ = server.finished.cancelled() => break,
            _ = term.recv() => {
                tracing::info!("SIGTERM");
                server.begin_shutdown(None);
            }
            _ = int.recv() => {
                tracing::info!("SIGINT");
                server.begin_shutdown(None);
            }
            _ = broken.cancelled(), if !output_broken => {
                output_broken = true;
                server.begin_shutdown(None);
            }
            frame = frames.next(), if !eof => match frame {
                Some(Ok(frame)) => server.handle_frame(frame, Instant::now()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read input; draining");
                    eof = true;
                    server.begin_shutdown(None);
                }
                None => {
                    tracing::info!("end of input; draining");
                    eof = true;
                    server.begin_shutdown(None);
                }
            },
        }
    }
    outbox.close().await;
    let _ = writer.await;
    tracing::info!("stopped");
    Ok(())
}
