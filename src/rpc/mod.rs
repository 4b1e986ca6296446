//! JSON-RPC 2.0 over stdio (PROTOCOL.md §1–8): framing, dispatch, priority queue,
//! deadlines, cancellation, progress and lifecycle. Knows nothing of search.

pub(crate) mod connection;
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
pub use router::{MethodKind, Notifier, Progress, RequestContext, Router, ServerState};
pub use server::{RoleReport, ServerConfig, serve};

use control::{CancelRequestParams, CancelledParams, Empty};

/// Registers the control methods (`ping`, `health`, `stats`: answered at once, never
/// queued) and documents what the connection answers itself (`shutdown`, cancellation).
pub fn register_control(router: &mut Router) {
    router
        .control(
            "ping",
            "Liveness probe; answers `{}` at once.",
            |_: Empty, _| Ok(Empty {}),
        )
        .control(
            "health",
            "Status, uptime, load and memory of the serving process; never queued.",
            |_: Empty, state| Ok(state.health()),
        )
        .control(
            "stats",
            "Request counters and latency percentiles per method, queue figures, memory.",
            |_: Empty, state| Ok(state.stats()),
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
