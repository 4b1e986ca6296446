//! Why a call failed.

use std::time::Duration;

use serde_json::Value;

/// Why a call failed: one variant per cause.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The call's deadline passed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The child died while the call was in flight.
    #[error("sidecar exited ({reason}; exit code {exit_code:?}, signal {signal:?})")]
    SidecarExited {
        /// Exit code, if it exited.
        exit_code: Option<i32>,
        /// Terminating signal, if killed.
        signal: Option<i32>,
        /// `crashed`, `hung`, `start timeout`, ...
        reason: String,
        /// Its last stderr lines.
        stderr_tail: Vec<String>,
    },
    /// The child went over `max_rss` and was restarted.
    #[error("sidecar exceeded its memory limit ({rss_bytes} > {limit_bytes} bytes)")]
    MemoryLimit {
        /// Resident memory when it was stopped.
        rss_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// No child can take the call (gave up restarting, stopping, too many waiting).
    #[error("sidecar unavailable: {0}")]
    Unavailable(String),
    /// The child broke the protocol or the params/result did not (de)serialize.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The child answered with a JSON-RPC error.
    #[error("{message} ({code}{})", kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default())]
    Server {
        /// JSON-RPC code.
        code: i64,
        /// `data.kind`.
        kind: Option<String>,
        /// Message.
        message: String,
        /// `data`.
        data: Option<Value>,
    },
}
