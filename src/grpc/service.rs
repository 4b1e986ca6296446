//! `quarry.v1.Quarry` (GRPC.md §1): the engine's requests and results in proto form.
//! Only translation lives here: validation, defaults and limits are the engine's (the
//! same calls as the JSON-RPC methods), and errors map through the one table of
//! [`crate::methods::rpc_error`] and [`super::status`].
//!
//! Engine work runs on the blocking pool under a cancellation token that is cancelled
//! when the call goes away (the client cancels, the connection drops) or its
//! `grpc-timeout` passes: the work stops, as `notifications/cancelled` stops it on stdio.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::Stream;
use quarry_protocol::{ErrorKind, RpcError};
use serde_json::{Map, Value};
use std::future::Future;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Request, Response, Status, Streaming};

use super::proto::{self, quarry_server::Quarry};
use super::status::status;
use crate::engine::lazy::LazyEngine;
use crate::engine::watch::{ChangeKind, WatchEvent, WatchSpec};
use crate::engine::{
    Document, Engine, EngineError, IngestDirOptions, Progress, SearchFilter, SearchMode,
    SearchRequest,
};
use crate::methods::rpc_error;
use crate::rpc::slots::{Admission, Permit, Slots};
use crate::rpc::stats::Stats;
use quarry_protocol::Priority;

/// A server stream of `T`.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `quarry.v1.Quarry` service over one engine.
#[derive(Clone)]
pub struct QuarryService {
    engine: Arc<LazyEngine>,
    slots: Arc<Slots>,
    stats: Arc<Stats>,
    started: Instant,
    /// Over TCP: the folders path-based calls may read (canonical); `None` on the
    /// local socket (GRPC.md §4).
    allow_roots: Option<Arc<Vec<PathBuf>>>,
    /// Cancelled when the drain starts (GRPC.md §4): new calls are `UNAVAILABLE` and
    /// open streams end with `UNAVAILABLE` (`ErrorInfo` reason `shutting_down`).
    draining: CancellationToken,
    /// Followers' sessions (GRPC.md §6), when this process serves a host's router.
    sessions: Option<Arc<crate::share::session::Sessions>>,
}

impl QuarryService {
    /// The service over `engine` (opened by the first call that needs it), its engine
    /// work scheduled by `slots` and its calls counted in `stats` (the stdio server's,
    /// when both serve one engine).
    pub fn new(engine: Arc<LazyEngine>, slots: Arc<Slots>, stats: Arc<Stats>) -> Self {
        QuarryService {
            engine,
            slots,
            stats,
            started: Instant::now(),
            allow_roots: None,
            draining: CancellationToken::new(),
            sessions: None,
        }
    }

    /// The same service answering followers' `Session`s with `sessions`.
    pub fn with_sessions(mut self, sessions: crate::share::session::Sessions) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }

    /// The same service confined to `roots` (the TCP endpoint's): `IndexFile` without
    /// content, `IngestDir` and `Watch` read only under them. An empty list allows no
    /// path at all.
    pub fn confined(&self, roots: &[PathBuf]) -> Self {
        let roots = super::confine::canonical_roots(roots);
        let sessions = self.sessions.as_ref().map(|s| Arc::new(s.confined(&roots)));
        QuarryService {
            engine: self.engine.clone(),
            slots: self.slots.clone(),
            stats: self.stats.clone(),
            started: self.started,
            allow_roots: Some(Arc::new(roots)),
            draining: self.draining.clone(),
            // Over TCP, sessions read paths only under the same roots.
            sessions,
        }
    }

    /// The token whose cancellation starts the drain of this service (and of its
    /// confined copies).
    pub fn drain_token(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// The figures its calls are counted in.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// `UNAVAILABLE` `shutting_down` once the drain has started.
    fn open(&self) -> Result<(), Status> {
        if self.draining.is_cancelled() {
            Err(st(shutting_down()))
        } else {
            Ok(())
        }
    }

    /// `INVALID_ARGUMENT` `invalid_path` unless `path` is under an allowed root, `..`
    /// and symlinks resolved (always allowed on the local socket).
    fn confine(&self, path: &str) -> Result<(), Status> {
        match &self.allow_roots {
            None => Ok(()),
            Some(roots) => super::confine::confine(roots, path).map_err(st),
        }
    }
}

/// What a call's metadata asks of the scheduler (GRPC.md §3).
#[derive(Debug, Clone, Copy, Default)]
struct CallMeta {
    /// From `grpc-timeout`.
    deadline: Option<Duration>,
    /// From `quarry-priority: high | normal | low`.
    priority: Priority,
}

/// The call's deadline and priority. Errors: a `quarry-priority` that is not one of
/// `high`, `normal`, `low` (`INVALID_ARGUMENT`).
fn call_meta<T>(req: &Request<T>) -> Result<CallMeta, Status> {
    let priority = match req
        .metadata()
        .get("quarry-priority")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("normal") => Priority::Normal,
        Some("high") => Priority::High,
        Some("low") => Priority::Low,
        Some(other) => {
            return Err(st(RpcError::invalid_params(
                "quarry-priority",
                format!("{other:?} is not high, normal or low"),
            )));
        }
    };
    Ok(CallMeta {
        deadline: deadline(req),
        priority,
    })
}

/// An empty `collection` means the default one (GRPC.md §1).
fn collection(c: String) -> Option<String> {
    (!c.is_empty()).then_some(c)
}

/// The call's deadline from its `grpc-timeout` header (`<digits><H|M|S|m|u|n>`).
fn deadline<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// When Quarry answers a call whose deadline is `d`: a moment before it, so that the
/// status is the contract's `DEADLINE_EXCEEDED` and not the transport's own
/// `CANCELLED`, which it sends when the deadline itself passes.
fn answer_by(d: Duration) -> Duration {
    d.saturating_sub((d / 50).max(Duration::from_millis(1)))
}

fn shutting_down() -> RpcError {
    RpcError::new(ErrorKind::ShuttingDown, "the server is shutting down")
}

fn timeout(d: Duration) -> RpcError {
    RpcError::new(
        ErrorKind::Timeout,
        format!("deadline of {} ms passed while running", d.as_millis()),
    )
    .with("timeoutMs", d.as_millis() as u64)
    .with("stage", "running")
}

/// Cancels `cancel` when `d` passes (noting it in `timed_out`), unless `cancel` fires
/// first.
fn arm_deadline(d: Option<Duration>, cancel: &CancellationToken, timed_out: &Arc<Mutex<bool>>) {
    if let Some(d) = d {
        let (cancel, timed_out) = (cancel.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(answer_by(d)) => {
                    *timed_out.lock().unwrap_or_else(|e| e.into_inner()) = true;
                    cancel.cancel();
                }
            }
        });
    }
}

impl QuarryService {
    /// A worker slot for a call of `priority`, waiting in the shared queue (bounded by
    /// `deadline`). Errors: the queue is full (`overloaded`), the deadline passed.
    async fn admit(&self, meta: CallMeta) -> Result<Permit, RpcError> {
        match self.slots.admit(meta.priority) {
            Admission::Run(p) => Ok(p),
            Admission::Queued(mut ticket) => match meta.deadline {
                None => Ok(ticket.wait().await),
                Some(d) => tokio::time::timeout(answer_by(d), ticket.wait())
                    .await
                    .map_err(|_| timeout(d).with("stage", "queued")),
            },
            Admission::Full => {
                self.stats.refused();
                let (_, limit) = self.slots.limits();
                Err(RpcError::new(
                    ErrorKind::Overloaded,
                    format!("the queue is full ({limit} requests waiting)"),
                )
                .with("queueLimit", limit))
            }
        }
    }

    /// Runs `f` on the engine on the blocking pool, in a worker slot of the shared
    /// scheduler; the work is cancelled when this future is dropped or the deadline
    /// passes.
    async fn run<T: Send + 'static>(
        &self,
        meta: CallMeta,
        f: impl FnOnce(&Engine, &CancellationToken) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, RpcError> {
        let permit = self.admit(meta).await?;
        let lazy = self.engine.clone();
        let cancel = CancellationToken::new();
        let _guard = cancel.clone().drop_guard();
        let c = cancel.clone();
        let work = tokio::task::spawn_blocking(move || f(&lazy.get()?.engine, &c));
        let joined = match meta.deadline {
            None => work.await,
            Some(d) => match tokio::time::timeout(answer_by(d), work).await {
                Ok(r) => r,
                Err(_) => {
                    cancel.cancel();
                    return Err(timeout(d));
                }
            },
        };
        drop(permit);
        joined
            .map_err(|e| RpcError::internal(format!("engine task failed: {e}")))?
            .map_err(rpc_error)
    }
}

/// A response stream that cancels its work when dropped (the client went away) and
/// ends with `UNAVAILABLE` `shutting_down` when the drain starts.
struct Guarded<S> {
    inner: S,
    _guard: DropGuard,
    drain: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl<S> Guarded<S> {
    fn new(inner: S, guard: DropGuard, draining: &CancellationToken) -> Self {
        Guarded {
            inner,
            _guard: guard,
            drain: Box::pin(draining.clone().cancelled_owned()),
            ended: false,
        }
    }
}

impl<T, S: Stream<Item = Result<T, Status>> + Unpin> Stream for Guarded<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        if self.drain.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return std::task::Poll::Ready(Some(Err(st(shutting_down()))));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Progress as a proto message, at most every 100 ms (and always the last one).
fn throttled(send: impl Fn(proto::Progress) + Sync) -> impl Fn(Progress) + Sync {
    let last = Mutex::new(None::<std::time::Instant>);
    move |p: Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            || p.files_done == p.files_total
        {
            *last = Some(std::time::Instant::now());
            send(proto::Progress {
                progress: p.files_done as f64,
                total: p.files_total as f64,
                message: format!(
                    "{}/{} files, {:.1} MB",
                    p.files_done,
                    p.files_total,
                    p.bytes as f64 / 1e6
                ),
            });
        }
    }
}

/// `google.protobuf.Struct` → a JSON object.
fn json_of_struct(s: prost_types::Struct) -> Map<String, Value> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, json_of_value(v)))
        .collect()
}

fn json_of_value(v: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(json_of_struct(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(json_of_value).collect()),
    }
}

fn change_kind(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Created => "created",
        ChangeKind::Modified => "modified",
        ChangeKind::Deleted => "deleted",
        ChangeKind::Renamed => "renamed",
    }
}

fn st(e: RpcError) -> Status {
    status(&e)
}

#[tonic::async_trait]
impl Quarry for QuarryService {
    async fn list_collections(
        &self,
        req: Request<proto::ListCollectionsRequest>,
    ) -> Result<Response<proto::ListCollectionsResponse>, Status> {
        self.open()?;
        let cs = self
            .run(call_meta(&req)?, |e, _| e.collections())
            .await
            .map_err(st)?;
        Ok(Response::new(proto::ListCollectionsResponse {
            collections: cs
                .into_iter()
                .map(|c| proto::Collection {
                    name: c.name,
                    points: c.points,
                    documents: c.documents,
                    dense: c.dense.map(|d| proto::DenseStatus {
                        model: d.model,
                        dimension: d.dimension,
                        embedded: d.embedded,
                        pending: d.pending,
                    }),
                })
                .collect(),
        }))
    }

    async fn create_collection(
        &self,
        req: Request<proto::CreateCollectionRequest>,
    ) -> Result<Response<proto::CreateCollectionResponse>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let name = req.into_inner().name;
        let n = name.clone();
        let created = self
            .run(d, move |e, _| e.create_collection(&n))
            .await
            .map_err(st)?;
        Ok(Response::new(proto::CreateCollectionResponse {
            name,
            created,
        }))
    }

    async fn delete_collection(
        &self,
        req: Request<proto::DeleteCollectionRequest>,
    ) -> Result<Response<proto::DeleteCollectionResponse>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let name = req.into_inner().name;
        let n = name.clone();
        let deleted = self
            .run(d, move |e, _| e.delete_collection(&n))
            .await
            .map_err(st)?;
        Ok(Response::new(proto::DeleteCollectionResponse {
            name,
            deleted,
        }))
    }

    async fn index_file(
        &self,
        req: Request<proto::IndexFileRequest>,
    ) -> Result<Response<proto::IndexFileResponse>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let r = req.into_inner();
        if r.content.is_none() {
            self.confine(&r.path)?;
        }
        let r = self.index_one(d, r).await.map_err(st)?;
        Ok(Response::new(r))
    }

    type IngestDirStream = ResponseStream<proto::IngestDirUpdate>;

    async fn ingest_dir(
        &self,
        req: Request<proto::IngestDirRequest>,
    ) -> Result<Response<Self::IngestDirStream>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let r = req.into_inner();
        self.confine(&r.root)?;
        let (tx, rx) = mpsc::channel::<Result<proto::IngestDirUpdate, Status>>(64);
        let cancel = CancellationToken::new();
        let timed_out = Arc::new(Mutex::new(false));
        arm_deadline(d.deadline, &cancel, &timed_out);
        let permit = self.admit(d).await.map_err(st)?;
        let (lazy, c) = (self.engine.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let progress_tx = tx.clone();
            let progress = throttled(move |p| {
                let _ = progress_tx.try_send(Ok(proto::IngestDirUpdate {
                    update: Some(proto::ingest_dir_update::Update::Progress(p)),
                }));
            });
            let options = IngestDirOptions {
                include: r.include,
                exclude: r.exclude,
            };
            let collection = collection(r.collection);
            let wait = r.wait_for_embeddings;
            let result = lazy.get().and_then(|o| {
                let result = o.engine.ingest_dir(
                    collection.as_deref(),
                    &PathBuf::from(&r.root),
                    &options,
                    &c,
                    &progress,
                )?;
                if wait {
                    let files = result.files + result.skipped.len() as u64;
                    o.engine.wait_for_embeddings(
                        collection
                            .as_deref()
                            .unwrap_or(crate::engine::DEFAULT_COLLECTION),
                        &c,
                        &|done, total| {
                            let _ = tx.try_send(Ok(proto::IngestDirUpdate {
                                update: Some(proto::ingest_dir_update::Update::Progress(
                                    proto::Progress {
                                        progress: (files + done) as f64,
                                        total: (files + total) as f64,
                                        message: format!("embedding: {done}/{total} chunks"),
                                    },
                                )),
                            }));
                        },
                    )?;
                }
                Ok(result)
            });
            let last = match result {
                Ok(r) => Ok(proto::IngestDirUpdate {
                    update: Some(proto::ingest_dir_update::Update::Result(
                        proto::IngestDirResult {
                            files: r.files,
                            chunks: r.chunks,
                            unchanged: r.unchanged,
                            removed: r.removed,
                            skipped: r
                                .skipped
                                .into_iter()
                                .map(|s| proto::Skipped {
                                    path: s.path,
                                    reason: s.reason,
                                })
                                .collect(),
                            elapsed_ms: r.elapsed_ms,
                        },
                    )),
                }),
                Err(EngineError::Cancelled)
                    if *timed_out.lock().unwrap_or_else(|e| e.into_inner()) =>
                {
                    Err(st(timeout(d.deadline.unwrap_or_default())))
                }
                Err(e) => Err(st(rpc_error(e))),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(Box::pin(Guarded::new(
            ReceiverStream::new(rx),
            cancel.drop_guard(),
            &self.draining,
        ))))
    }

    async fn bulk_index(
        &self,
        req: Request<Streaming<proto::IndexFileRequest>>,
    ) -> Result<Response<proto::BulkIndexResponse>, Status> {
        self.open()?;
        let mut files = req.into_inner();
        let mut out = proto::BulkIndexResponse::default();
        // Files are written in batches (one store write and one flush each), up to
        // BATCH_FILES files or BATCH_BYTES bytes; the next batch is received while one is
        // written (at most one in flight; dropped, it is aborted and its work cancelled).
        const BATCH_FILES: usize = 64;
        const BATCH_BYTES: usize = 8 << 20;
        let mut batch: Vec<proto::IndexFileRequest> = Vec::new();
        let mut bytes = 0;
        let mut in_flight: Option<Written> = None;
        loop {
            let next = files.message().await?;
            let end = next.is_none();
            // A file of another collection than the batch's starts the next batch.
            let mut next_batch = None;
            if let Some(file) = next {
                out.total += 1;
                if file.content.is_none() {
                    out.failed += 1;
                    out.errors.push(proto::FileError {
                        path: file.path,
                        kind: ErrorKind::InvalidParams.as_str().to_owned(),
                        message: "BulkIndex needs each file's content".into(),
                    });
                } else if batch
                    .first()
                    .is_some_and(|b| b.collection != file.collection)
                {
                    next_batch = Some(file);
                } else {
                    bytes += file.content.as_ref().map_or(0, Vec::len);
                    batch.push(file);
                }
            }
            let full = batch.len() >= BATCH_FILES || bytes >= BATCH_BYTES;
            if !batch.is_empty() && (end || full || next_batch.is_some()) {
                bytes = 0;
                let started = self.write_batch(std::mem::take(&mut batch));
                if let Some(previous) = in_flight.replace(started) {
                    previous.fold_into(&mut out).await?;
                }
            }
            if let Some(file) = next_batch {
                bytes += file.content.as_ref().map_or(0, Vec::len);
                batch.push(file);
            }
            if end {
                break;
            }
        }
        if let Some(last) = in_flight {
            last.fold_into(&mut out).await?;
        }
        Ok(Response::new(out))
    }

    type SyncIndexStream = ResponseStream<proto::SyncResponse>;

    async fn sync_index(
        &self,
        req: Request<Streaming<proto::SyncRequest>>,
    ) -> Result<Response<Self::SyncIndexStream>, Status> {
        self.open()?;
        use proto::sync_request::Request as In;
        use proto::sync_response::Response as Out;
        let started = Instant::now();
        let mut input = req.into_inner();
        let Some(In::Manifest(manifest)) = input.message().await?.and_then(|m| m.request) else {
            return Err(st(RpcError::invalid_params(
                "manifest",
                "the first message must be the manifest",
            )));
        };
        let collection = collection(manifest.collection)
            .unwrap_or_else(|| crate::engine::DEFAULT_COLLECTION.to_owned());
        let mut more = manifest.more;
        let mut parts = vec![manifest.entries];
        // A manifest over the message limit comes in parts, each but the last `more`.
        while more {
            let Some(In::Manifest(part)) = input.message().await?.and_then(|m| m.request) else {
                return Err(st(RpcError::invalid_params(
                    "manifest",
                    "a manifest part with `more` must be followed by another part",
                )));
            };
            more = part.more;
            parts.push(part.entries);
        }
        let entries: Vec<(String, String)> = parts
            .into_iter()
            .flatten()
            .map(|e| (e.path, e.sha256.to_ascii_lowercase()))
            .collect();
        let expected: std::collections::HashMap<String, String> = entries.iter().cloned().collect();
        let (c, prefix) = (collection.clone(), PathBuf::from(manifest.prefix));
        let plan = self
            .run(CallMeta::default(), move |e, _| {
                e.sync_plan(&c, &prefix, &entries)
            })
            .await
            .map_err(st)?;
        let (tx, rx) = mpsc::channel::<Result<proto::SyncResponse, Status>>(64);
        let send = |tx: &mpsc::Sender<_>, r: Out| {
            let tx = tx.clone();
            async move {
                tx.send(Ok(proto::SyncResponse { response: Some(r) }))
                    .await
                    .is_ok()
            }
        };
        let mut needed: std::collections::HashSet<String> = plan.needed.iter().cloned().collect();
        let total = needed.len() as f64;
        // In parts of at most NEED_PART_BYTES of paths, under the message limit.
        const NEED_PART_BYTES: usize = 4 << 20;
        let mut parts: Vec<Vec<String>> = vec![Vec::new()];
        let mut size = 0;
        for path in &plan.needed {
            if size + path.len() > NEED_PART_BYTES && !parts[parts.len() - 1].is_empty() {
                parts.push(Vec::new());
                size = 0;
            }
            size += path.len() + 8;
            let last = parts.len() - 1;
            parts[last].push(path.clone());
        }
        let count = parts.len();
        for (i, paths) in parts.into_iter().enumerate() {
            let more = i + 1 < count;
            send(&tx, Out::Need(proto::Need { paths, more })).await;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let mut result = proto::SyncResult {
                needed: plan.needed.len() as u64,
                deleted: plan.deleted,
                unchanged: plan.unchanged,
                skipped: plan.skipped,
                ..proto::SyncResult::default()
            };
            let mut done = 0u64;
            loop {
                // The client gone (or a broken stream) ends the sync: what was applied
                // stays, each file whole at its old or its new content.
                let Ok(Some(msg)) = input.message().await else {
                    return;
                };
                match msg.request {
                    Some(In::File(f)) => {
                        let ack = if !needed.remove(&f.path) {
                            Err(format!("{} was not asked for (or was sent twice)", f.path))
                        } else if expected.get(&f.path).map(String::as_str)
                            != Some(crate::engine::sha256_hex(&f.content).as_str())
                        {
                            Err(format!(
                                "{}: the content does not match the manifest's sha256",
                                f.path
                            ))
                        } else {
                            let sha = expected.get(&f.path).cloned();
                            let indexed = service
                                .index_one(
                                    CallMeta::default(),
                                    proto::IndexFileRequest {
                                        path: f.path.clone(),
                                        collection: collection.clone(),
                                        content: Some(f.content),
                                        metadata: None,
                                    },
                                )
                                .await;
                            // Content refused (or holding nothing to index) is not asked
                            // for again at the same hash.
                            if let Some(opened) = service.engine.opened() {
                                let refused = match &indexed {
                                    Ok(r) => (r.chunks == 0).then_some(sha.as_deref()).flatten(),
                                    Err(e) if e.kind == ErrorKind::UnsupportedContent => {
                                        sha.as_deref()
                                    }
                                    Err(_) => None,
                                };
                                opened
                                    .engine
                                    .note_sync_refusal(&collection, &f.path, refused);
                            }
                            indexed.map(|_| ()).map_err(|e| e.message)
                        };
                        match &ack {
                            Ok(()) => result.indexed += 1,
                            Err(_) => result.failed += 1,
                        }
                        done += 1;
                        let ok = send(
                            &tx,
                            Out::Ack(proto::FileAck {
                                path: f.path,
                                indexed: ack.is_ok(),
                                error: ack.err().unwrap_or_default(),
                            }),
                        )
                        .await
                            && send(
                                &tx,
                                Out::Progress(proto::Progress {
                                    progress: done as f64,
                                    total,
                                    message: format!("{done}/{total} files"),
                                }),
                            )
                            .await;
                        if !ok {
                            return;
                        }
                    }
                    Some(In::Done(_)) => {
                        // Paths asked for and never sent count as failed.
                        result.failed += needed.len() as u64;
                        result.elapsed_ms = started.elapsed().as_millis() as u64;
                        send(&tx, Out::Result(result)).await;
                        return;
                    }
                    Some(In::Manifest(_)) | None => {
                        let _ = tx
                            .send(Err(st(RpcError::invalid_params(
                                "request",
                                "after the manifest: files, then done",
                            ))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(Guarded::new(
            ReceiverStream::new(rx),
            CancellationToken::new().drop_guard(),
            &self.draining,
        ))))
    }

    async fn delete_documents(
        &self,
        req: Request<proto::DeleteDocumentsRequest>,
    ) -> Result<Response<proto::DeleteDocumentsResponse>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let r = req.into_inner();
        let deleted = self
            .run(d, move |e, _| {
                e.delete_documents(
                    collection(r.collection)
                        .as_deref()
                        .unwrap_or(crate::engine::DEFAULT_COLLECTION),
                    r.path.as_deref().map(std::path::Path::new),
                    r.document_id.as_deref(),
                )
            })
            .await
            .map_err(st)?;
        Ok(Response::new(proto::DeleteDocumentsResponse { deleted }))
    }

    async fn search(
        &self,
        req: Request<proto::SearchRequest>,
    ) -> Result<Response<proto::SearchResponse>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let r = req.into_inner();
        let filter = r.filter.unwrap_or_default();
        let request = SearchRequest {
            query: r.query,
            collection: collection(r.collection),
            // 0 means the default (GRPC.md §1).
            limit: (r.limit != 0).then_some(r.limit as usize),
            filter: SearchFilter {
                path_prefix: (!filter.path_prefix.is_empty())
                    .then(|| PathBuf::from(filter.path_prefix)),
                languages: filter.languages,
            },
            mode: match r.mode.as_str() {
                "" => None,
                name => Some(SearchMode::from_name(name).ok_or_else(|| {
                    st(RpcError::invalid_params(
                        "mode",
                        format!("unknown mode {name:?}: use hybrid, sparse or dense"),
                    ))
                })?),
            },
        };
        let result = self
            .run(d, move |e, _| e.search(&request))
            .await
            .map_err(st)?;
        Ok(Response::new(proto::SearchResponse {
            hits: result
                .hits
                .into_iter()
                .map(|h| proto::SearchHit {
                    path: h.path,
                    score: h.score,
                    chunk_index: h.chunk_index,
                    start_line: h.start_line,
                    end_line: h.end_line,
                    snippet: h.snippet,
                    language: h.language,
                    document_id: h.document_id,
                    snippet_line: h.snippet_line,
                    sources: h.sources.iter().map(|s| s.as_str().to_owned()).collect(),
                    location: h.location.map(|l| proto::Location {
                        page: l.page,
                        heading: l.heading,
                        chapter: l.chapter,
                        cell: l.cell,
                    }),
                })
                .collect(),
            mode: result.mode.as_str().to_owned(),
        }))
    }

    type SearchSymbolsStream = ResponseStream<proto::Symbol>;

    async fn search_symbols(
        &self,
        req: Request<proto::SymbolsRequest>,
    ) -> Result<Response<Self::SearchSymbolsStream>, Status> {
        self.open()?;
        let d = call_meta(&req)?;
        let r = req.into_inner();
        let filter = r.filter.unwrap_or_default();
        let request = crate::engine::SymbolsRequest {
            query: r.query,
            collection: collection(r.collection),
            limit: (r.limit != 0).then_some(r.limit as usize),
            kinds: r.kinds,
            languages: r.languages,
            path_prefix: (!filter.path_prefix.is_empty())
                .then(|| PathBuf::from(filter.path_prefix)),
        };
        let found = self
            .run(d, move |e, _| e.search_symbols(&request))
            .await
            .map_err(st)?;
        let symbols = found.into_iter().map(|s| {
            Ok(proto::Symbol {
                name: s.name,
                kind: s.kind,
                path: s.path,
                line: s.line,
                end_line: s.end_line,
                language: s.language,
                container: s.container.unwrap_or_default(),
                signature: s.signature.unwrap_or_default(),
                score: s.score,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(symbols))))
    }

    type WatchStream = ResponseStream<proto::WatchUpdate>;

    async fn watch(
        &self,
        req: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.open()?;
        let r = req.into_inner();
        self.confine(&r.root)?;
        let (tx, rx) = mpsc::unbounded_channel::<Result<proto::WatchUpdate, Status>>();
        let cancel = CancellationToken::new();
        let id: Arc<Mutex<Option<String>>> = Arc::default();
        let (lazy, c, watch_id) = (self.engine.clone(), cancel.clone(), id.clone());
        let started_tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let opened = match lazy.get() {
                Ok(o) => o,
                Err(e) => {
                    let _ = tx.send(Err(st(rpc_error(e))));
                    return;
                }
            };
            let spec = WatchSpec {
                root: PathBuf::from(&r.root),
                collection: collection(r.collection)
                    .unwrap_or_else(|| crate::engine::DEFAULT_COLLECTION.to_owned()),
                options: IngestDirOptions {
                    include: r.include,
                    exclude: r.exclude,
                },
                debounce: (r.debounce_ms != 0).then(|| Duration::from_millis(r.debounce_ms)),
                id: None,
            };
            let armed = |info: &crate::engine::watch::WatchInfo| {
                *watch_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.watch_id.clone());
                let _ = started_tx.send(Ok(proto::WatchUpdate {
                    update: Some(proto::watch_update::Update::Started(proto::WatchStarted {
                        watch_id: info.watch_id.clone(),
                        root: info.root.clone(),
                    })),
                }));
            };
            let progress_tx = tx.clone();
            let progress = throttled(move |p| {
                let _ = progress_tx.send(Ok(proto::WatchUpdate {
                    update: Some(proto::watch_update::Update::Progress(p)),
                }));
            });
            let event_tx = tx.clone();
            let sink = Arc::new(move |e: WatchEvent| {
                let _ = event_tx.send(Ok(proto::WatchUpdate {
                    update: Some(proto::watch_update::Update::Event(proto::WatchEvent {
                        path: e.path,
                        kind: change_kind(e.kind).to_owned(),
                        indexed: e.indexed,
                        error: e.error.unwrap_or_default(),
                    })),
                }));
            });
            if let Err(e) = opened.watches.start(spec, &c, &armed, &progress, sink) {
                let _ = tx.send(Err(st(rpc_error(e))));
            }
        });
        // The watch lives exactly as long as the call: dropping the stream stops it.
        let stopper = CancellationToken::new();
        {
            let (stopper, lazy) = (stopper.clone(), self.engine.clone());
            tokio::spawn(async move {
                stopper.cancelled().await;
                cancel.cancel();
                let id = id.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let (Some(id), Some(o)) = (id, lazy.opened()) {
                    o.watches.stop(&id);
                }
            });
        }
        Ok(Response::new(Box::pin(Guarded::new(
            UnboundedReceiverStream::new(rx),
            stopper.drop_guard(),
            &self.draining,
        ))))
    }

    type SessionStream = ResponseStream<proto::JsonRpcFrame>;

    async fn session(
        &self,
        req: Request<Streaming<proto::JsonRpcFrame>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.open()?;
        let Some(sessions) = &self.sessions else {
            return Err(Status::unimplemented(
                "this endpoint takes no follower sessions (only a `quarry serve` or `quarry daemon` owning its data folder, on its local socket)",
            ));
        };
        let rx = sessions.serve(req.into_inner());
        Ok(Response::new(Box::pin(Guarded::new(
            ReceiverStream::new(rx),
            CancellationToken::new().drop_guard(),
            &self.draining,
        ))))
    }

    async fn stats(
        &self,
        _req: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        self.open()?;
        let occupancy = self.slots.occupancy();
        let (max_concurrency, max_queue) = self.slots.limits();
        let methods = self
            .stats
            .methods()
            .into_iter()
            .map(|(name, m)| {
                let l = m.latency_us;
                let figures = proto::MethodStats {
                    count: m.count,
                    ok: m.ok,
                    errors: m.errors.into_iter().collect(),
                    latency_us: Some(proto::LatencyUs {
                        p50: l.p50,
                        p90: l.p90,
                        p99: l.p99,
                        max: l.max,
                        mean: l.mean,
                    }),
                };
                (name, figures)
            })
            .collect();
        Ok(Response::new(proto::StatsResponse {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            rss_bytes: crate::rpc::control::rss_bytes(),
            running: occupancy.running as u64,
            queued: occupancy.queued as u64,
            max_concurrency: max_concurrency as u64,
            max_queue: max_queue as u64,
            overloaded: Stats::get(&self.stats.overloaded),
            methods,
        }))
    }
}

/// A `BulkIndex` batch being written: its paths and its task.
struct Written {
    paths: Vec<String>,
    task: tokio_util::task::AbortOnDropHandle<
        Result<Vec<Result<crate::engine::IngestResult, EngineError>>, RpcError>,
    >,
}

impl Written {
    /// Waits for the batch and adds its outcome to `out`. Errors: the store's.
    async fn fold_into(self, out: &mut proto::BulkIndexResponse) -> Result<(), Status> {
        let results = self
            .task
            .await
            .map_err(|e| st(RpcError::internal(format!("batch task failed: {e}"))))?
            .map_err(st)?;
        for (path, r) in self.paths.into_iter().zip(results) {
            match r {
                Ok(r) if r.unchanged => out.unchanged += 1,
                Ok(_) => out.indexed += 1,
                Err(e) => {
                    let e = rpc_error(e);
                    out.failed += 1;
                    out.errors.push(proto::FileError {
                        path,
                        kind: e.kind.as_str().to_owned(),
                        message: e.message,
                    });
                }
            }
        }
        Ok(())
    }
}

impl QuarryService {
    /// Starts writing one `BulkIndex` batch (its files share one collection).
    fn write_batch(&self, files: Vec<proto::IndexFileRequest>) -> Written {
        let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
        let collection = collection(files[0].collection.clone());
        let docs: Vec<Document> = files
            .into_iter()
            .map(|f| Document {
                path: PathBuf::from(f.path),
                content: f.content,
                metadata: f.metadata.map(|m| Value::Object(json_of_struct(m))),
            })
            .collect();
        let service = self.clone();
        let task = tokio::spawn(async move {
            service
                .run(CallMeta::default(), move |e, _| {
                    e.ingest_many(collection.as_deref(), docs)
                })
                .await
        });
        Written {
            paths,
            task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }

    /// `IndexFile` and each file of `BulkIndex`.
    async fn index_one(
        &self,
        d: CallMeta,
        r: proto::IndexFileRequest,
    ) -> Result<proto::IndexFileResponse, RpcError> {
        let metadata = r.metadata.map(|m| Value::Object(json_of_struct(m)));
        let result = self
            .run(d, move |e, _| {
                e.ingest(
                    collection(r.collection).as_deref(),
                    &PathBuf::from(&r.path),
                    r.content,
                    metadata.as_ref(),
                )
            })
            .await?;
        Ok(proto::IndexFileResponse {
            document_id: result.document_id,
            path: result.path,
            chunks: result.chunks,
            unchanged: result.unchanged,
            partial: result.partial,
        })
    }
}
