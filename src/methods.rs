//! The method table of `quarry serve`: control methods, test aids, and the engine
//! methods of PROTOCOL.md §9, with the one mapping of engine errors to protocol errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::lazy::LazyEngine;
use crate::engine::watch::{WatchEvent, WatchInfo, WatchSpec};
use crate::engine::{
    CollectionInfo, Engine, EngineError, IngestDirOptions, IngestDirResult, IngestResult,
    SearchFilter, SearchRequest, SearchResult,
};
use crate::rpc::schema::{OutgoingNotification, core_notifications};
use crate::rpc::{ErrorKind, RequestContext, Router, RpcError, debug, register_control};
use crate::store::StoreError;

/// Maps an engine error to its protocol error (PROTOCOL.md §8).
pub fn rpc_error(e: EngineError) -> RpcError {
    match e {
        EngineError::NotFound(m) => RpcError::new(ErrorKind::NotFound, m),
        EngineError::InvalidPath(m) => RpcError::new(ErrorKind::InvalidPath, m),
        EngineError::UnsupportedContent(m) => RpcError::new(ErrorKind::UnsupportedContent, m),
        EngineError::InvalidInput { field, message } => RpcError::invalid_params(field, message),
        EngineError::Cancelled => RpcError::new(ErrorKind::Cancelled, "cancelled"),
        EngineError::Limit(m) => RpcError::new(ErrorKind::Overloaded, m).with("reason", "limit"),
        EngineError::Storage(StoreError::Locked { pid, path }) => RpcError::new(
            ErrorKind::Storage,
            StoreError::Locked {
                pid,
                path: path.clone(),
            }
            .to_string(),
        )
        .with("reason", "locked")
        .with("pid", pid)
        .with("lockFile", path.to_string_lossy()),
        EngineError::Storage(s) => {
            // A reason for the failures a host can act on (retry later, fix the key).
            let reason = match &s {
                StoreError::Unavailable(_) => Some(("unavailable", true)),
                StoreError::Timeout(_) => Some(("timeout", true)),
                StoreError::Unauthorized(_) => Some(("unauthorized", false)),
                _ => None,
            };
            let e = RpcError::new(ErrorKind::Storage, s.to_string());
            match reason {
                Some((reason, retryable)) => e.with("reason", reason).with("retryable", retryable),
                None => e,
            }
        }
        EngineError::ModelMismatch(m) => RpcError::new(ErrorKind::Storage, m.to_string())
            .with("reason", "model_mismatch")
            .with("collection", m.collection.clone())
            .with(
                "collectionModel",
                serde_json::to_value(&m.stored).unwrap_or_default(),
            )
            .with(
                "serverModel",
                serde_json::to_value(&m.configured).unwrap_or_default(),
            ),
    }
}

/// `collections/create` and `collections/delete` params.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CollectionName {
    /// Collection name: 1–64 letters, digits, `_` or `-`.
    pub name: String,
}

/// `collections/list` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CollectionsList {
    /// Every collection, by name.
    pub collections: Vec<CollectionInfo>,
}

/// `collections/create` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CollectionCreated {
    /// The name.
    pub name: String,
    /// False when it already existed.
    pub created: bool,
}

/// `collections/delete` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CollectionDeleted {
    /// The name.
    pub name: String,
    /// False when it did not exist.
    pub deleted: bool,
}

/// `documents/ingest` params.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct IngestParams {
    /// The file (absolute or relative to the server's working directory); with
    /// `content`, only the document's name.
    pub path: String,
    /// Collection (default `"default"`, created on first use).
    pub collection: Option<String>,
    /// The text to index instead of reading `path`.
    pub content: Option<String>,
    /// Stored with every chunk of the document.
    pub metadata: Option<Map<String, Value>>,
}

/// `documents/ingestDir` params.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestDirParams {
    /// The folder (absolute or relative to the server's working directory).
    pub root: String,
    /// Collection (default `"default"`, created on first use).
    pub collection: Option<String>,
    /// Only files matching one of these globs (gitignore syntax, relative to `root`).
    pub include: Option<Vec<String>>,
    /// Not the files matching one of these globs.
    pub exclude: Option<Vec<String>>,
    /// Also wait until every chunk of the collection has its dense vector, reporting
    /// the embedding as progress (default false: answer once BM25 is written).
    pub wait_for_embeddings: Option<bool>,
}

/// `documents/delete` params: `path` (a file or a folder), `documentId`, or both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteParams {
    /// A file, or a folder (every document under it).
    pub path: Option<String>,
    /// A document id from `documents/ingest` or a search hit.
    pub document_id: Option<String>,
    /// Collection (default `"default"`).
    pub collection: Option<String>,
}

/// `documents/delete` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    /// Documents deleted.
    pub deleted: u64,
}

/// `search/query` filter.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryFilter {
    /// Only documents at this path or under this folder.
    pub path_prefix: Option<String>,
    /// Only documents of these languages (`python`, `rust`, `markdown`, ...).
    pub languages: Option<Vec<String>>,
}

/// `search/query` params.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryParams {
    /// Words, identifiers or a description.
    pub query: String,
    /// Collection (default `"default"`).
    pub collection: Option<String>,
    /// Most hits (1–100, default 10).
    pub limit: Option<u32>,
    /// Restrictions.
    pub filter: Option<QueryFilter>,
    /// Ranking: `hybrid` (BM25 and the embedding fused), `sparse` (BM25) or `dense`
    /// (the embedding). Default: `hybrid` when the collection has dense vectors of
    /// this server's model, else `sparse`.
    pub mode: Option<crate::engine::SearchMode>,
}

/// `search/symbols` filter.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymbolsFilter {
    /// Only symbols in files at this path or under this folder.
    pub path_prefix: Option<String>,
}

/// `search/symbols` params.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SymbolsParams {
    /// A name, a prefix, `snake_case`/`camelCase` sub-words, a `*` glob, or a qualified
    /// name (`Foo.bar`, `Foo::bar`).
    pub query: String,
    /// Collection (default `"default"`).
    pub collection: Option<String>,
    /// Most symbols (1–100, default 20).
    pub limit: Option<u32>,
    /// Only these kinds (`function`, `method`, `class`, `struct`, `enum`, `interface`,
    /// `trait`, `type`, `module`, `constant`, `field`, `constructor`, `enumMember`,
    /// `macro`, `variable`).
    pub kinds: Option<Vec<String>>,
    /// Only symbols of files in these languages.
    pub languages: Option<Vec<String>>,
    /// Restrictions.
    pub filter: Option<SymbolsFilter>,
}

/// `search/symbols` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SymbolsResult {
    /// Most relevant first: the exact name, then a prefix, sub-words, a substring, a
    /// near miss; definitions before declarations.
    pub symbols: Vec<crate::engine::SymbolHit>,
}

/// `watch/start` params.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchStartParams {
    /// The folder to watch (absolute or relative to the server's working directory).
    pub root: String,
    /// Collection (default `"default"`).
    pub collection: Option<String>,
    /// Only files matching one of these globs.
    pub include: Option<Vec<String>>,
    /// Not the files matching one of these globs.
    pub exclude: Option<Vec<String>>,
    /// Quiet time in ms before a burst of changes is applied (default 200, 10–60000).
    pub debounce_ms: Option<u64>,
    /// Run under this id instead of a fresh one: a follower re-arming its host's watch
    /// on a new owner after a takeover (GRPC.md §6). `invalid_params` if it is in use.
    pub watch_id: Option<String>,
}

/// `watch/start` result.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchStarted {
    /// Id for `watch/stop` and in every `watch/event`.
    pub watch_id: String,
    /// The root as watched: absolute, lexically normalised, symlinks not resolved (the
    /// `path` of the event that reports its deletion).
    pub root: String,
    /// The collection.
    pub collection: String,
}

/// `watch/stop` params.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchStopParams {
    /// The watch.
    pub watch_id: String,
}

/// `watch/stop` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WatchStopped {
    /// False when no such watch was running.
    pub stopped: bool,
}

/// `watch/list` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WatchList {
    /// Running watches.
    pub watches: Vec<WatchInfo>,
}

/// Registers `watch/start`, `watch/stop`, `watch/list` (§9). `engine` is `None` only to
/// document them.
pub fn register_watch(router: &mut Router, engine: Option<Arc<LazyEngine>>) {
    let e = engine.clone();
    router.method(
        "watch/start",
        "Reconciles a folder with the index (progress), then keeps it in step; sends watch/event after each applied change.",
        move |p: WatchStartParams, ctx: RequestContext| {
            let e = e.clone();
            async move {
                let lazy = engine_or_error(&e)?;
                let info = blocking(move || {
                    let watches = lazy.get()?.watches;
                    let spec = WatchSpec {
                        root: PathBuf::from(&p.root),
                        collection: p
                            .collection
                            .unwrap_or_else(|| crate::engine::DEFAULT_COLLECTION.to_owned()),
                        options: IngestDirOptions {
                            include: p.include.unwrap_or_default(),
                            exclude: p.exclude.unwrap_or_default(),
                        },
                        debounce: p.debounce_ms.map(Duration::from_millis),
                        id: p.watch_id,
                    };
                    let notifier = ctx.notifier.clone();
                    let sink = Arc::new(move |e: WatchEvent| notifier.send("watch/event", &e));
                    watches.start(spec, &ctx.cancel, &|_| {}, &ingest_progress(&ctx), sink)
                })
                .await?;
                Ok(WatchStarted {
                    watch_id: info.watch_id,
                    root: info.root,
                    collection: info.collection,
                })
            }
        },
    );
    // Stopping and listing never open the store: no store, no watches.
    let e = engine.clone();
    router.method(
        "watch/stop",
        "Stops a watch.",
        move |p: WatchStopParams, _ctx| {
            let e = e.clone();
            async move {
                let stopped = e
                    .and_then(|e| e.opened())
                    .is_some_and(|o| o.watches.stop(&p.watch_id));
                Ok::<_, RpcError>(WatchStopped { stopped })
            }
        },
    );
    let e = engine;
    router.method(
        "watch/list",
        "The running watches.",
        move |_: crate::rpc::control::Empty, _ctx| {
            let e = e.clone();
            async move {
                Ok::<_, RpcError>(WatchList {
                    watches: e
                        .and_then(|e| e.opened())
                        .map(|o| o.watches.list())
                        .unwrap_or_default(),
                })
            }
        },
    );
}

/// Runs blocking engine work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RpcError::internal(format!("engine task failed: {e}")))?
        .map_err(rpc_error)
}

fn engine_or_error(engine: &Option<Arc<LazyEngine>>) -> Result<Arc<LazyEngine>, RpcError> {
    engine
        .clone()
        .ok_or_else(|| RpcError::new(ErrorKind::Storage, "no engine in this process"))
}

/// Registers a method whose whole work is one blocking engine call `f(engine, params,
/// ctx)`, run on the blocking pool.
fn engine_method<P, R>(
    router: &mut Router,
    name: &'static str,
    summary: &'static str,
    engine: &Option<Arc<LazyEngine>>,
    f: fn(&Engine, P, &RequestContext) -> Result<R, EngineError>,
) where
    P: serde::de::DeserializeOwned + JsonSchema + Send + 'static,
    R: Serialize + JsonSchema + Send + 'static,
{
    let e = engine.clone();
    router.method(name, summary, move |p: P, ctx: RequestContext| {
        let e = e.clone();
        async move {
            let lazy = engine_or_error(&e)?;
            blocking(move || f(&lazy.get()?.engine, p, &ctx)).await
        }
    });
}

/// Throttled progress for ingests: at most every 100 ms, and the last one.
fn ingest_progress(ctx: &RequestContext) -> impl Fn(crate::engine::Progress) + Sync + '_ {
    let last = std::sync::Mutex::new(None::<Instant>);
    move |pr: crate::engine::Progress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
            || pr.files_done == pr.files_total;
        if due {
            *last = Some(Instant::now());
            let msg = format!(
                "{}/{} files, {:.1} MB",
                pr.files_done,
                pr.files_total,
                pr.bytes as f64 / 1e6
            );
            ctx.progress.report(
                pr.files_done as f64,
                Some(pr.files_total as f64),
                Some(&msg),
            );
        }
    }
}

/// Registers the engine methods (§9). `engine` is `None` only to document them.
pub fn register_engine(router: &mut Router, engine: Option<Arc<LazyEngine>>) {
    engine_method(
        router,
        "collections/list",
        "Every collection with its chunk (`points`) and document counts.",
        &engine,
        |engine, _: crate::rpc::control::Empty, _| {
            Ok(CollectionsList {
                collections: engine.collections()?,
            })
        },
    );
    engine_method(
        router,
        "collections/create",
        "Creates a collection (no-op if it exists).",
        &engine,
        |engine, p: CollectionName, _| {
            let created = engine.create_collection(&p.name)?;
            Ok(CollectionCreated {
                name: p.name,
                created,
            })
        },
    );
    engine_method(
        router,
        "collections/delete",
        "Deletes a collection and everything in it.",
        &engine,
        |engine, p: CollectionName, _| {
            let deleted = engine.delete_collection(&p.name)?;
            Ok(CollectionDeleted {
                name: p.name,
                deleted,
            })
        },
    );
    engine_method(
        router,
        "documents/ingest",
        "Indexes one file (or given content), idempotently by content hash.",
        &engine,
        |engine, p: IngestParams, _| -> Result<IngestResult, EngineError> {
            let metadata = p.metadata.map(Value::Object);
            engine.ingest(
                p.collection.as_deref(),
                &PathBuf::from(&p.path),
                p.content.map(String::into_bytes),
                metadata.as_ref(),
            )
        },
    );
    engine_method(
        router,
        "documents/ingestDir",
        "Indexes every text file under a folder (honouring .gitignore), removes vanished ones; reports progress.",
        &engine,
        |engine, p: IngestDirParams, ctx| -> Result<IngestDirResult, EngineError> {
            let options = IngestDirOptions {
                include: p.include.unwrap_or_default(),
                exclude: p.exclude.unwrap_or_default(),
            };
            let progress = ingest_progress(ctx);
            let result = engine.ingest_dir(
                p.collection.as_deref(),
                &PathBuf::from(&p.root),
                &options,
                &ctx.cancel,
                &progress,
            )?;
            if p.wait_for_embeddings == Some(true) {
                let files = result.files + result.skipped.len() as u64;
                engine.wait_for_embeddings(
                    p.collection
                        .as_deref()
                        .unwrap_or(crate::engine::DEFAULT_COLLECTION),
                    &ctx.cancel,
                    &|done, total| {
                        // Files first, then chunks: `progress` keeps growing.
                        let msg = format!("embedding: {done}/{total} chunks");
                        ctx.progress.report(
                            (files + done) as f64,
                            Some((files + total) as f64),
                            Some(&msg),
                        );
                    },
                )?;
            }
            Ok(result)
        },
    );
    engine_method(
        router,
        "documents/delete",
        "Deletes documents by path (a file or a folder) and/or documentId.",
        &engine,
        |engine, p: DeleteParams, _| {
            let deleted = engine.delete_documents(
                p.collection
                    .as_deref()
                    .unwrap_or(crate::engine::DEFAULT_COLLECTION),
                p.path.as_deref().map(std::path::Path::new),
                p.document_id.as_deref(),
            )?;
            Ok(Deleted { deleted })
        },
    );
    engine_method(
        router,
        "search/query",
        "Ranked chunks for a query, deduplicated per chunk, with snippets.",
        &engine,
        |engine, p: QueryParams, _| -> Result<SearchResult, EngineError> {
            let f = p.filter.unwrap_or_default();
            engine.search(&SearchRequest {
                query: p.query,
                collection: p.collection,
                limit: p.limit.map(|l| l as usize),
                filter: SearchFilter {
                    path_prefix: f.path_prefix.map(PathBuf::from),
                    languages: f.languages.unwrap_or_default(),
                },
                mode: p.mode,
            })
        },
    );
    engine_method(
        router,
        "search/symbols",
        "Definitions (functions, classes, …) by name, ranked like an editor's go-to-symbol.",
        &engine,
        |engine, p: SymbolsParams, _| -> Result<SymbolsResult, EngineError> {
            let symbols = engine.search_symbols(&crate::engine::SymbolsRequest {
                query: p.query,
                collection: p.collection,
                limit: p.limit.map(|l| l as usize),
                kinds: p.kinds.unwrap_or_default(),
                languages: p.languages.unwrap_or_default(),
                path_prefix: p.filter.and_then(|f| f.path_prefix).map(PathBuf::from),
            })?;
            Ok(SymbolsResult { symbols })
        },
    );
}

/// The methods a follower carries to the owner of its data folder (GRPC.md §6): every
/// engine and watch method.
pub const OWNER_METHODS: &[&str] = &[
    "collections/list",
    "collections/create",
    "collections/delete",
    "documents/ingest",
    "documents/ingestDir",
    "documents/delete",
    "search/query",
    "search/symbols",
    "watch/start",
    "watch/stop",
    "watch/list",
];

/// The owner methods that only read: retried on the new owner when the owner is lost
/// mid-call (GRPC.md §6); the others are answered `owner_lost`.
pub const READ_ONLY_METHODS: &[&str] = &["search/query", "search/symbols", "collections/list"];

/// Every method `quarry serve` answers; the `debug/*` test aids only when `debug`.
/// `engine` is opened by the first engine method; `None` only to document them.
pub fn router(debug: bool, engine: Option<Arc<LazyEngine>>) -> Router {
    let mut router = Router::new();
    register_control(&mut router);
    register_engine(&mut router, engine.clone());
    register_watch(&mut router, engine);
    if debug {
        debug::register(&mut router);
    }
    router
}

/// Every notification `quarry serve` sends.
pub fn notifications() -> Vec<OutgoingNotification> {
    let mut n = core_notifications();
    n.push(OutgoingNotification {
        name: "watch/event",
        summary: "A change under a watched folder, sent after the index applied it.",
        params: |g| g.subschema_for::<WatchEvent>(),
    });
    n
}

/// The whole contract of `schemas/`: every method `quarry serve` answers (the debug
/// aids included) and what `quarry supervise` adds, with every notification either sends.
pub fn contract() -> (Router, Vec<OutgoingNotification>) {
    let mut router = router(true, None);
    let mut notes = notifications();
    notes.extend(crate::supervise::document(&mut router));
    (router, notes)
}
