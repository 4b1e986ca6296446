//! The method table of `quarry serve`: control methods, test aids, and the engine
//! methods of PROTOCOL.md §9, with the one mapping of engine errors to protocol errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::watch::{WatchEvent, WatchInfo, WatchSpec, Watches};
use crate::engine::{
    CollectionInfo, Engine, EngineError, IngestDirOptions, IngestDirResult, IngestResult,
    SearchFilter, SearchResult,
};
use crate::rpc::schema::{OutgoingNotification, core_notifications};
use crate::rpc::{ErrorKind, RequestContext, Router, RpcError, debug, register_control};

/// Most hits one search may ask for.
pub const MAX_LIMIT: u32 = 100;

/// Maps an engine error to its protocol error (PROTOCOL.md §8).
pub fn rpc_error(e: EngineError) -> RpcError {
    match e {
        EngineError::NotFound(m) => RpcError::new(ErrorKind::NotFound, m),
        EngineError::InvalidPath(m) => RpcError::new(ErrorKind::InvalidPath, m),
        EngineError::UnsupportedContent(m) => RpcError::new(ErrorKind::UnsupportedContent, m),
        EngineError::InvalidInput { field, message } => RpcError::invalid_params(field, message),
        EngineError::Cancelled => RpcError::new(ErrorKind::Cancelled, "cancelled"),
        EngineError::Limit(m) => RpcError::new(ErrorKind::Overloaded, m).with("reason", "limit"),
        EngineError::Storage(s) => RpcError::new(ErrorKind::Storage, s.to_string()),
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
pub struct IngestDirParams {
    /// The folder (absolute or relative to the server's working directory).
    pub root: String,
    /// Collection (default `"default"`, created on first use).
    pub collection: Option<String>,
    /// Only files matching one of these globs (gitignore syntax, relative to `root`).
    pub include: Option<Vec<String>>,
    /// Not the files matching one of these globs.
    pub exclude: Option<Vec<String>>,
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
}

/// `watch/start` result.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatchStarted {
    /// Id for `watch/stop` and in every `watch/event`.
    pub watch_id: String,
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

/// Default debounce of a watch, ms.
pub const DEFAULT_DEBOUNCE_MS: u64 = 200;

/// Registers `watch/start`, `watch/stop`, `watch/list` (§9). `watches` is `None` only to
/// document them.
pub fn register_watch(router: &mut Router, watches: Option<Arc<Watches>>) {
    let w = watches.clone();
    router.method(
        "watch/start",
        "Reconciles a folder with the index (progress), then keeps it in step; sends watch/event after each applied change.",
        move |p: WatchStartParams, ctx: RequestContext| {
            let w = w.clone();
            async move {
                let watches = w.ok_or_else(|| RpcError::new(ErrorKind::Storage, "no engine in this process"))?;
                let debounce = p.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS);
                if !(10..=60_000).contains(&debounce) {
                    return Err(RpcError::invalid_params("debounceMs", "must be between 10 and 60000"));
                }
                let info = blocking(move || {
                    let spec = WatchSpec {
                        root: PathBuf::from(&p.root),
                        collection: p
                            .collection
                            .unwrap_or_else(|| crate::engine::DEFAULT_COLLECTION.to_owned()),
                        options: IngestDirOptions {
                            include: p.include.unwrap_or_default(),
                            exclude: p.exclude.unwrap_or_default(),
                        },
                        debounce: Duration::from_millis(debounce),
                    };
                    let notifier = ctx.notifier.clone();
                    let sink = Arc::new(move |e: WatchEvent| notifier.send("watch/event", &e));
                    watches.start(spec, &ctx.cancel, &ingest_progress(&ctx), sink)
                })
                .await?;
                Ok(WatchStarted {
                    watch_id: info.watch_id,
                })
            }
        },
    );
    let w = watches.clone();
    router.method(
        "watch/stop",
        "Stops a watch.",
        move |p: WatchStopParams, _ctx| {
            let w = w.clone();
            async move {
                let stopped = w.map(|w| w.stop(&p.watch_id)).unwrap_or(false);
                Ok::<_, RpcError>(WatchStopped { stopped })
            }
        },
    );
    let w = watches;
    router.method(
        "watch/list",
        "The running watches.",
        move |_: crate::rpc::control::Empty, _ctx| {
            let w = w.clone();
            async move {
                Ok::<_, RpcError>(WatchList {
                    watches: w.map(|w| w.list()).unwrap_or_default(),
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

fn engine_or_error(engine: &Option<Arc<Engine>>) -> Result<Arc<Engine>, RpcError> {
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
    engine: &Option<Arc<Engine>>,
    f: fn(&Engine, P, &RequestContext) -> Result<R, EngineError>,
) where
    P: serde::de::DeserializeOwned + JsonSchema + Send + 'static,
    R: Serialize + JsonSchema + Send + 'static,
{
    let e = engine.clone();
    router.method(name, summary, move |p: P, ctx: RequestContext| {
        let e = e.clone();
        async move {
            let engine = engine_or_error(&e)?;
            blocking(move || f(&engine, p, &ctx)).await
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
pub fn register_engine(router: &mut Router, engine: Option<Arc<Engine>>) {
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
                p.content,
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
            engine.ingest_dir(
                p.collection.as_deref(),
                &PathBuf::from(&p.root),
                &options,
                &ctx.cancel,
                &ingest_progress(ctx),
            )
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
            let limit = p.limit.unwrap_or(10);
            if limit == 0 || limit > MAX_LIMIT {
                return Err(EngineError::InvalidInput {
                    field: "limit",
                    message: format!("must be between 1 and {MAX_LIMIT}"),
                });
            }
            let f = p.filter.unwrap_or_default();
            let filter = SearchFilter {
                path_prefix: f.path_prefix.map(PathBuf::from),
                languages: f.languages.unwrap_or_default(),
            };
            engine.search(p.collection.as_deref(), &p.query, limit as usize, &filter)
        },
    );
}

/// Every method `quarry serve` answers; the `debug/*` test aids only when `debug`.
/// `max_watches` bounds `watch/start`.
pub fn router(debug: bool, engine: Option<Arc<Engine>>, max_watches: usize) -> Router {
    let mut router = Router::new();
    register_control(&mut router);
    let watches = engine
        .clone()
        .map(|e| Arc::new(Watches::new(e, max_watches)));
    register_engine(&mut router, engine);
    register_watch(&mut router, watches);
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
