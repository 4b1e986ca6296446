//! The domain: ingest and search over a [`Store`]. Knows nothing of JSON-RPC; every
//! call is synchronous (run it on a blocking thread) and long ones take a
//! `CancellationToken` and a progress callback.
//!
//! Ingest, one stage per file: `walk` (ignore rules, globs) → `read` (decode, hash) →
//! [`chunk`] → `vectors` (terms from [`text`], the definition boost, payload) → the
//! store; `reconcile` brings a tree or a folder in step with the disk by content hash
//! (used by `ingest_dir` and by [`watch`]); `ingest` is one file; `search` ranks.

// The ingest flow, one stage per file: walk → read → chunk → vectors (text) → store,
// and the reconcile that ingestDir and watches share.
pub mod chunk;
mod dense;
pub mod document;
mod ingest;
pub mod lazy;
mod read;
mod reconcile;
mod search;
pub mod semantic;
mod symbols;
mod sync;
pub mod syntax;
pub mod text;
mod vectors;
mod walk;
pub mod watch;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::Serialize;

pub use ingest::{Document, IngestResult};
pub use reconcile::{FileChange, IngestDirResult, Scope};
pub use search::{
    DEFAULT_LIMIT, MAX_LIMIT, SearchFilter, SearchHit, SearchMode, SearchRequest, SearchResult,
};
pub use symbols::{SymbolHit, SymbolsRequest};
pub use sync::{SyncPlan, sha256_hex};
pub use walk::{IngestDirOptions, Skipped};

use crate::store::{CollectionSpec, Condition, Filter, Store, StoreError};
use chunk::ChunkParams;
use text::{Bm25Params, Embedder, Profile};

/// The collection used when none is named.
pub const DEFAULT_COLLECTION: &str = "default";

/// Payload field names.
pub(crate) mod field {
    pub const PATH: &str = "path";
    pub const SCOPES: &str = "scopes";
    pub const DOCUMENT_ID: &str = "documentId";
    pub const LANGUAGE: &str = "language";
    pub const CONTENT_HASH: &str = "contentHash";
    /// Hex SHA-256 of the file's bytes (what `SyncIndex` manifests name, GRPC.md §2).
    pub const SHA256: &str = "sha256";
    pub const CHUNK_INDEX: &str = "chunkIndex";
    pub const START_LINE: &str = "startLine";
    pub const END_LINE: &str = "endLine";
    pub const TEXT: &str = "text";
    pub const METADATA: &str = "metadata";
    /// The file's mtime (ms since the Unix epoch): the background embedder takes the
    /// newest first.
    pub const MTIME: &str = "mtime";
    /// The chunk's heading context (retrieval only).
    pub const CONTEXT: &str = "context";
    /// Hash of the text the chunk is embedded as: an unchanged one is never embedded
    /// again.
    pub const CHUNK_HASH: &str = "chunkHash";
    /// When the chunk was written (µs since the Unix epoch, increasing within a
    /// process): a document's replace deletes only older versions, so two processes
    /// writing one document at once (on a shared Qdrant server) leave the later one.
    pub const REVISION: &str = "revision";
    /// The definitions whose first line is in the chunk (`syntax::Symbol`s).
    pub const SYMBOLS: &str = "symbols";
    /// A document chunk's page, heading, chapter or cell (`document::Location`).
    pub const LOCATION: &str = "location";
}

/// Engine failures, each mapped to one protocol error kind.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such document, collection or path.
    #[error("{0}")]
    NotFound(String),
    /// A path that cannot be used (unreadable, not a file or folder).
    #[error("{0}")]
    InvalidPath(String),
    /// A file that cannot be read as text.
    #[error("{0}")]
    UnsupportedContent(String),
    /// A bad argument: `field` names it.
    #[error("{field}: {message}")]
    InvalidInput {
        /// The offending parameter.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Stopped by cancellation or deadline.
    #[error("cancelled")]
    Cancelled,
    /// A limit is reached (watches, the OS's watch limit); the message says which and how
    /// to raise it.
    #[error("{0}")]
    Limit(String),
    /// The store failed.
    #[error(transparent)]
    Storage(StoreError),
    /// The collection's dense vectors come from another embedding model than the
    /// configured one (or none is configured): mixing vector spaces is refused.
    #[error("{0}")]
    ModelMismatch(Box<ModelMismatch>),
}

/// A collection filled by another embedding model ([`EngineError::ModelMismatch`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("collection {collection} holds vectors of the embedding model {} ({} dimensions, fingerprint {}); {}", stored.name, stored.dimension, stored.fingerprint, match configured {
    Some(c) => format!("this server runs {} (fingerprint {}): start it with the collection's model, or delete the collection to re-index it", c.name, c.fingerprint),
    None => "this server has no embedding model: start it with --embed-model and --embed-tokenizer".to_owned(),
})]
pub struct ModelMismatch {
    /// The collection.
    pub collection: String,
    /// The model its vectors come from.
    pub stored: semantic::ModelInfo,
    /// The server's model, if any.
    pub configured: Option<semantic::ModelInfo>,
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoCollection(name) => {
                EngineError::NotFound(format!("no such collection: {name}"))
            }
            StoreError::InvalidName(_) => EngineError::InvalidInput {
                field: "collection",
                message: e.to_string(),
            },
            other => EngineError::Storage(other),
        }
    }
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Files larger than this (bytes) are skipped (documents have their own limit).
    pub max_file_bytes: u64,
    /// PDF, HTML, DOCX, ODT, EPUB and notebook files larger than this (bytes) are
    /// skipped; default 64 MiB.
    pub max_document_bytes: u64,
    /// Bounds on extracting one document (time budget, inflated bytes, text kept).
    pub documents: document::Limits,
    /// Files read, chunked and embedded in parallel.
    pub workers: usize,
    /// Term normalisation.
    pub profile: Profile,
    /// BM25 parameters.
    pub bm25: Bm25Params,
    /// Chunking parameters.
    pub chunking: ChunkParams,
    /// Whether the names a chunk defines (`def`, `class`, `fn`, …) count extra
    /// (`ingest::DEFINITION_WEIGHT` times); on by default. Fixed per data folder.
    pub definition_boost: bool,
    /// The sentence-embedding model for semantic search (`None`: BM25 only).
    pub model: Option<Arc<semantic::Model>>,
    /// Background embedding threads, each with its own ONNX session (about 150 MB
    /// each once running); default: one per core.
    pub embed_threads: usize,
    /// CPU priority of the background embedding threads (default `SCHED_IDLE`).
    pub embed_priority: semantic::Priority,
    /// Whether code is parsed for its definitions (`search/symbols`); on by default
    /// (off only to measure what parsing costs).
    pub parse_code: bool,
    /// Wall time one file's parse may take before it is given up (the file keeps its
    /// chunks, without symbols); default [`syntax::PARSE_BUDGET`].
    pub parse_budget: std::time::Duration,
    /// Whether parsed code is chunked along its definitions (`chunk::chunk_code`)
    /// rather than in line windows.
    pub syntax_chunks: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_file_bytes: 4 * 1024 * 1024,
            max_document_bytes: 64 * 1024 * 1024,
            documents: document::Limits::default(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            profile: Profile::default(),
            bm25: Bm25Params::default(),
            chunking: ChunkParams::default(),
            definition_boost: true,
            model: None,
            embed_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            embed_priority: semantic::Priority::default(),
            parse_code: true,
            parse_budget: syntax::PARSE_BUDGET,
            syntax_chunks: false,
        }
    }
}

/// One collection in `collections/list`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Chunks stored.
    pub points: u64,
    /// Documents (files) stored.
    pub documents: u64,
    /// The collection's embedding model and how far its chunks are embedded; absent for
    /// a BM25-only collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense: Option<semantic::DenseStatus>,
}

/// Progress of a long operation.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Files done.
    pub files_done: u64,
    /// Files in total.
    pub files_total: u64,
    /// Bytes read so far.
    pub bytes: u64,
}

/// The engine: one per data folder.
pub struct Engine {
    store: Arc<dyn Store>,
    embedder: Embedder,
    config: EngineConfig,
    /// Serialises writers per collection, so two ingests of one file cannot interleave.
    writers: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Per collection, content `SyncIndex` sent that the engine refused (binary, too
    /// large, empty, not UTF-8): absolute path → SHA-256, so that a later sync does not
    /// ask for the same bytes again (GRPC.md §2). Kept for the process's lifetime.
    refused: Mutex<HashMap<String, HashMap<String, String>>>,
    /// Foreground calls in flight (the background embedder yields to them).
    load: Arc<semantic::Load>,
    /// The background embedder, when a model is configured.
    backfill: Option<semantic::Backfill>,
    /// How each collection relates to the model (cached).
    bindings: Mutex<HashMap<String, dense::Binding>>,
    /// Writes made through this engine (symbol tables are read again after one).
    writes: std::sync::atomic::AtomicU64,
    /// Each collection's symbols, as last read (`search/symbols`).
    symbol_tables: Mutex<HashMap<String, Arc<symbols::Table>>>,
}

/// Absolute, lexically normalised form of `path` (relative to the working directory).
pub fn absolute(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Checks that `dir` is an existing folder: `NotFound` or `InvalidPath` otherwise.
pub(crate) fn require_dir(dir: &Path) -> Result<(), EngineError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(EngineError::InvalidPath(format!(
            "not a folder: {}",
            dir.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(EngineError::NotFound(format!(
            "no such folder: {}",
            dir.display()
        ))),
        Err(e) => Err(EngineError::InvalidPath(format!(
            "unreadable: {}: {e}",
            dir.display()
        ))),
    }
}

/// Stable id of a document: the first 16 hex digits of BLAKE3 of its absolute path.
pub fn document_id(path: &str) -> String {
    blake3::hash(path.as_bytes()).to_hex()[..16].to_owned()
}

/// `path` and each of its ancestors, as strings (the `scopes` payload field).
fn scopes(path: &Path) -> Vec<String> {
    path.ancestors()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Engine {
    /// An engine over `store`.
    ///
    /// Errors: invalid BM25 parameters.
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Result<Self, EngineError> {
        let embedder = Embedder::new(config.profile, config.bm25).map_err(|message| {
            EngineError::InvalidInput {
                field: "bm25",
                message,
            }
        })?;
        let load = Arc::new(semantic::Load::default());
        let backfill = config.model.as_ref().map(|m| {
            semantic::Backfill::start(
                store.clone(),
                m.clone(),
                load.clone(),
                config.embed_threads,
                config.embed_priority,
            )
        });
        let engine = Engine {
            store,
            embedder,
            config,
            writers: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            load,
            backfill,
            bindings: Mutex::new(HashMap::new()),
            writes: std::sync::atomic::AtomicU64::new(0),
            symbol_tables: Mutex::new(HashMap::new()),
        };
        engine.bind_existing();
        Ok(engine)
    }

    /// Marks a foreground call (the background embedder waits while any runs).
    pub(crate) fn foreground(&self) -> semantic::Busy<'_> {
        self.load.enter()
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn spec(&self) -> CollectionSpec {
        CollectionSpec {
            keyword_fields: vec![
                field::PATH,
                field::SCOPES,
                field::DOCUMENT_ID,
                field::LANGUAGE,
                field::CONTENT_HASH,
                field::CHUNK_HASH,
            ],
            integer_fields: vec![field::CHUNK_INDEX],
            dense_dim: self.model_info().map(|m| m.dimension),
            ordered_fields: vec![field::MTIME],
        }
    }

    fn writer(&self, collection: &str) -> Arc<Mutex<()>> {
        self.writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(collection.to_owned())
            .or_default()
            .clone()
    }

    /// Creates `name` if it does not exist; `true` if it was created. With a model, the
    /// collection is bound to it (see `dense`).
    ///
    /// Errors: an invalid name (`InvalidInput`), `ModelMismatch` for a collection filled
    /// by another model, `Storage`.
    pub fn create_collection(&self, name: &str) -> Result<bool, EngineError> {
        let created = self.store.create_collection(name, &self.spec())?;
        if created {
            self.unbind(name);
        }
        self.check_writable(name)?;
        Ok(created)
    }

    /// Deletes `name`; `false` if it did not exist.
    pub fn delete_collection(&self, name: &str) -> Result<bool, EngineError> {
        let w = self.writer(name);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let deleted = self.store.delete_collection(name)?;
        self.touched();
        self.unbind(name);
        Ok(deleted)
    }

    /// Every collection with its point and document counts.
    pub fn collections(&self) -> Result<Vec<CollectionInfo>, EngineError> {
        let mut out = Vec::new();
        for name in self.store.collections()? {
            let points = self.store.count(&name, None)? as u64;
            let documents = self.store.count(
                &name,
                Some(&Filter::must(Condition::Integer(field::CHUNK_INDEX, 0))),
            )? as u64;
            let dense = self.dense_status(&name)?;
            out.push(CollectionInfo {
                name,
                points,
                documents,
                dense,
            });
        }
        Ok(out)
    }

    /// Deletes documents by path (a file, or a folder: everything under it) and/or
    /// document id. Returns how many documents were deleted.
    ///
    /// Errors: neither given (`InvalidInput`), unknown collection (`NotFound`).
    pub fn delete_documents(
        &self,
        collection: &str,
        path: Option<&Path>,
        document_id: Option<&str>,
    ) -> Result<u64, EngineError> {
        let mut filter = Filter::default();
        if let Some(p) = path {
            filter = filter.and(Condition::Keyword(
                field::SCOPES,
                absolute(p).to_string_lossy().into_owned(),
            ));
        }
        if let Some(id) = document_id {
            filter = filter.and(Condition::Keyword(field::DOCUMENT_ID, id.to_owned()));
        }
        if filter.must.is_empty() {
            return Err(EngineError::InvalidInput {
                field: "path",
                message: "give a path or a documentId".into(),
            });
        }
        let _busy = self.foreground();
        let w = self.writer(collection);
        let _g = w.lock().unwrap_or_else(|e| e.into_inner());
        let docs = self.store.count(
            collection,
            Some(
                &filter
                    .clone()
                    .and(Condition::Integer(field::CHUNK_INDEX, 0)),
            ),
        )? as u64;
        self.store.delete(collection, &filter)?;
        self.touched();
        self.store.flush(collection)?;
        Ok(docs)
    }
}
