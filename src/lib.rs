//! Quarry: an ingestion-and-search engine that runs as a sidecar and speaks JSON-RPC 2.0
//! over stdio (see `PROTOCOL.md` in the shared docs and the README).
//!
//! - [`rpc`]: the protocol engine (framing, dispatch, scheduling, lifecycle).
//! - [`engine`]: chunking, sparse vectors, ingest and search (no JSON-RPC).
//! - [`store`]: the vector store trait and its embedded Qdrant backend.
//! - [`methods`]: the method table of `quarry serve`.
//! - [`supervise`]: `quarry supervise`, the supervisor as a stdio proxy.
//! - [`logging`]: `tracing` to stderr through a lossy, non-blocking writer.

pub mod engine;
pub mod logging;
pub mod methods;
pub mod rpc;
pub mod store;
pub mod supervise;
