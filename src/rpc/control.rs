//! Wire types of `stats` and the `debug/*` test aids (the shared control types are in
//! `quarry_protocol::control`). They are the source of `schemas/`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::stats::MethodStats;

pub use quarry_protocol::control::*;

/// Queue figures in `stats`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Requests running now.
    pub running: usize,
    /// Requests waiting now.
    pub queued: usize,
    /// Highest number waiting at once since start.
    pub peak_queued: usize,
    /// `--max-concurrency`.
    pub max_concurrency: usize,
    /// `--max-queue`.
    pub max_queue: usize,
    /// Requests refused with `overloaded` since start.
    pub overloaded: u64,
}

/// Counters of messages that never reached a method.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageStats {
    /// Lines that were not JSON or not UTF-8.
    pub parse_errors: u64,
    /// Lines over `--max-message-bytes`.
    pub too_large: u64,
    /// Values that were not valid requests.
    pub invalid_requests: u64,
    /// Notifications received.
    pub notifications: u64,
}

/// `stats` result.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsResult {
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Scheduling figures.
    pub queue: QueueStats,
    /// Messages that never reached a method.
    pub messages: MessageStats,
    /// Per method: counts, errors by kind, latency percentiles (µs, read to response).
    pub methods: BTreeMap<String, MethodStats>,
}

/// `debug/sleep` params.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct SleepParams {
    /// Milliseconds to sleep.
    pub ms: u64,
}

/// `debug/sleep` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct SleepResult {
    /// Milliseconds slept.
    pub slept: u64,
}

/// `debug/echo` params and result: any object, returned byte for byte as sent (without
/// `_meta`), so numbers beyond 64 bits survive.
#[derive(Debug, Deserialize, Serialize)]
#[serde(transparent)]
pub struct EchoParams(pub Box<serde_json::value::RawValue>);

impl JsonSchema for EchoParams {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EchoParams".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Any object; returned as sent (without `_meta`).",
            "type": "object"
        })
    }
}

/// `debug/exit` params.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct ExitParams {
    /// Process exit code.
    pub code: i32,
}

/// `debug/alloc` params.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct AllocParams {
    /// MiB to allocate, touch and keep.
    pub mb: u64,
}

/// `debug/alloc` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocResult {
    /// MiB held by `debug/alloc` in total.
    pub held_mb: u64,
}

/// Resident set size of this process in bytes (0 if the OS will not say).
pub fn rss_bytes() -> u64 {
    use std::sync::Mutex;
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    static SYSTEM: Mutex<Option<System>> = Mutex::new(None);
    let pid = Pid::from_u32(std::process::id());
    let mut guard = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let sys = guard.get_or_insert_with(System::new);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map_or(0, |p| p.memory())
}
