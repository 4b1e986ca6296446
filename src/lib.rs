//! Quarry: an ingestion-and-search engine that runs as a sidecar and speaks JSON-RPC 2.0
//! over stdio (see `PROTOCOL.md` in the shared docs and the README).
//!
//! - [`rpc`]: the protocol engine (framing, dispatch, scheduling, lifecycle).
//! - [`engine`]: chunking, sparse vectors, ingest and search (no JSON-RPC).
//! - [`store`]: the vector store trait and its embedded Qdrant backend.
//! - [`methods`]: the method table of `quarry serve`.
//! - [`supervise`]: `quarry supervise`, the supervisor as a stdio proxy.
//! - [`grpc`]: `quarry.v1.Quarry` over gRPC on the local endpoint (GRPC.md §1–4).
//! - [`registry`]: the per-user service registry (GRPC.md §5).
//! - [`logging`]: `tracing` to stderr through a lossy, non-blocking writer.

pub mod engine;
pub mod grpc;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod registry;
pub mod rpc;
pub mod share;
pub mod store;
pub mod supervise;
