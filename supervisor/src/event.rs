//! What a supervisor reports: events, child notifications, state and status.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Kinds of supervisor events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A child was spawned.
    Started,
    /// It sent `sidecar/ready`.
    Ready,
    /// A health check was missed.
    Unhealthy,
    /// It exited.
    Exited,
    /// A restart is scheduled.
    Restarting,
    /// It went over a resource limit.
    LimitExceeded,
    /// The restart budget is exhausted; no more children.
    GaveUp,
    /// The supervisor stopped.
    Stopped,
}

/// A supervisor event (`supervisor/event` in PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// The child's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Terminating signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Restart number since the last backoff reset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Delay before the restart, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Why, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resident memory, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Milliseconds since the supervisor was created.
    pub at_ms: u64,
}

/// A notification from the child other than progress (`sidecar/ready`, `watch/event`…).
#[derive(Debug, Clone)]
pub struct Notification {
    /// Method.
    pub method: String,
    /// Params (raw JSON text; `null` when absent).
    pub params: Arc<RawValue>,
    /// Which child sent it (1-based).
    pub generation: u64,
}

/// Supervisor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Spawning, or waiting for `sidecar/ready`.
    Starting,
    /// Serving.
    Ready,
    /// Waiting out a backoff delay.
    Restarting,
    /// The restart budget is exhausted.
    GaveUp,
    /// Stopping.
    Stopping,
    /// Stopped (by `shutdown`, or the child exited and the policy does not restart).
    Stopped,
}

/// How the last child ended (`lastExit` in `supervisor/status`; the same names as
/// `supervisor/event` and the `sidecar_exited` error data, PROTOCOL.md §10).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit code, if it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Terminating signal, if killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why.
    pub reason: String,
}

/// `status()`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// State.
    pub state: State,
    /// Current child's pid.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u64,
    /// Current child's uptime, ms.
    pub uptime_ms: Option<u64>,
    /// How the last child ended.
    pub last_exit: Option<ExitInfo>,
    /// Lines on the child's stdout that were not protocol messages.
    pub garbage_lines: u64,
}
