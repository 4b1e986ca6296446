//! JSON-RPC 2.0 over stdio (PROTOCOL.md §1–8): framing, dispatch, priority queue,
//! deadlines, cancellation, progress and lifecycle. Knows nothing of search.

pub mod control;
pub mod debug;
pub mod router;
pub mod schema;
pub mod server;
pub mod slots;
pub mod stats;
pub mod transport;
pub mod writer;

pub use quarry_protocol::{ErrorKind, RpcError};
pub use router::{MethodKind, Notifier, Progress, RequestContext, Router};
pub(crate) use server::Sink;
pub use server::{ServerConfig, serve};

use control::{CancelRequestParams, CancelledParams, Empty, HealthResult, StatsResult};

/// Documents the methods the server answers itself (for `sidecar/ready` and schemas).
pub fn register_control(router: &mut Router) {
    router
        .document::<Empty, Empty>(
            "ping",
            "Liveness probe; answers `{}` at once.",
            MethodKind::Control,
        )
        .document::<Empty, HealthResult>(
            "health",
            "Status, uptime, load and memory of the serving process; never queued.",
            MethodKind::Control,
        )
        .document::<Empty, StatsResult>(
            "stats",
            "Request counters and latency percentiles per method, queue figures, memory.",
            MethodKind::Control,
        )
        .document::<Empty, Empty>(
            "shutdown",
            "Stops taking work, drains within the grace period, answers, exits 0.",
            MethodKind::Control,
        )
        .document::<CancelledParams, Empty>(
            "notifications/cancelled",
            "Cancels a queued or running request (MCP).",
            MethodKind::Notification,
        )
        .document::<CancelRequestParams, Empty>(
            "$/cancelRequest",
            "Alias of notifications/cancelled (LSP).",
            MethodKind::Notification,
        );
}
