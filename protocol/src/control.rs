//! Wire types of the control methods and notifications every party shares
//! (PROTOCOL.md §5–7): ready, progress, cancellation, health. They are the source of
//! `schemas/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Version of the wire protocol (PROTOCOL.md title).
pub const PROTOCOL_VERSION: u32 = 1;

/// Params of methods that take none (`{}`; unknown members are ignored).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Empty {}

/// A string or integer id or token, echoed as sent.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IdOrToken {
    /// String form.
    Str(String),
    /// Integer form.
    Int(i64),
}

/// `notifications/cancelled` params (MCP).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelledParams {
    /// Id of the request to cancel.
    pub request_id: IdOrToken,
    /// Why, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `$/cancelRequest` params (LSP).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct CancelRequestParams {
    /// Id of the request to cancel.
    pub id: IdOrToken,
}

/// `notifications/progress` params (MCP).
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressParams {
    /// The request's `_meta.progressToken`.
    pub progress_token: IdOrToken,
    /// Increases with each notification.
    pub progress: f64,
    /// Expected final value, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// What is happening, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The wire form of one `notifications/progress`, with the token exactly as the host
/// sent it (any integer or string, echoed byte for byte).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressNotification<'a> {
    /// The request's `_meta.progressToken`, raw.
    pub progress_token: &'a RawValue,
    /// Increases with each notification.
    pub progress: f64,
    /// Expected final value, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// What is happening, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
}

/// A `notifications/progress` as a client reads it (the token as JSON).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressUpdate {
    /// The token of the request it belongs to.
    pub progress_token: serde_json::Value,
    /// Increases with each update.
    pub progress: f64,
    /// Expected final value.
    #[serde(default)]
    pub total: Option<f64>,
    /// For people.
    #[serde(default)]
    pub message: Option<String>,
}

/// `sidecar/ready` params.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadyParams {
    /// Always 1.
    pub protocol_version: u32,
    /// The server's version.
    pub version: String,
    /// The serving process's pid.
    pub pid: u32,
    /// Every method the server answers, sorted.
    pub methods: Vec<String>,
    /// The process's local gRPC endpoint (GRPC.md §4), `unix:` and the socket's path;
    /// absent when it serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `health` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Serving normally.
    Ok,
    /// Serving, but the queue is at least 90 % full or the server is shutting down.
    Degraded,
}

/// `health` result.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthResult {
    /// `ok` or `degraded`.
    pub status: HealthStatus,
    /// Milliseconds since start.
    pub uptime_ms: u64,
    /// Requests running now.
    pub in_flight: usize,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Resident memory of the serving process, bytes.
    pub rss_bytes: u64,
    /// The serving process's version.
    pub version: String,
    /// For a server on a data folder (GRPC.md §6): `owner` (it holds the store) or
    /// `follower` (it carries engine methods to the owner); absent before either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The pid of the data folder's owner (this process's own when it is the owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
}
