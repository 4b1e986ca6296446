//! Configuration of a supervisor and of one call.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use quarry_protocol::Priority;
use quarry_protocol::control::ProgressUpdate;

use crate::child::ChildSpec;
use crate::policy::RestartPolicy;

/// Supervisor configuration. [`Config::new`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// The child to run.
    pub child: ChildSpec,
    /// How long a start may take to send `sidecar/ready`.
    pub start_timeout: Duration,
    /// Period of `health` checks.
    pub health_interval: Duration,
    /// Deadline of each `health` check.
    pub health_timeout: Duration,
    /// Missed checks in a row that mean hung.
    pub health_failures: u32,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Resident memory limit of the child in bytes.
    pub max_rss: Option<u64>,
    /// RSS sampling period.
    pub rss_interval: Duration,
    /// How long a stop waits for the `shutdown` request to drain the child.
    pub stop_timeout: Duration,
    /// How long a stop waits after closing stdin, and after `SIGTERM`.
    pub term_timeout: Duration,
    /// Calls that may wait for a ready child; more fail with `Unavailable`.
    pub max_waiting_calls: usize,
    /// Times an idempotent call is sent again after the child died under it.
    pub replay_budget: u32,
    /// Recent stderr lines kept for crash reports.
    pub stderr_lines: usize,
    /// Longest line accepted from the child's stdout.
    pub max_line_bytes: usize,
}

impl Config {
    /// Defaults: backoff 250 ms ×2 ≤ 30 s, reset after 60 s, 5 restarts / 60 s, health
    /// every 1 s with a 1 s deadline and 2 misses, start timeout 30 s, 1,024 open files.
    pub fn new<I, S>(program: impl Into<OsString>, args: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Config {
            child: ChildSpec {
                program: program.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: Vec::new(),
                cwd: None,
                max_open_files: Some(1024),
                max_address_space: None,
            },
            start_timeout: Duration::from_secs(30),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(1),
            health_failures: 2,
            restart: RestartPolicy::default(),
            max_rss: None,
            rss_interval: Duration::from_millis(100),
            stop_timeout: Duration::from_secs(5),
            term_timeout: Duration::from_secs(2),
            max_waiting_calls: 4096,
            replay_budget: 2,
            stderr_lines: 64,
            max_line_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(ProgressUpdate) + Send + Sync>;

/// Per-call options.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Deadline of the call, waiting for a ready child included; also sent to the
    /// child as `_meta.timeoutMs` (what is left of it).
    pub timeout: Option<Duration>,
    /// `_meta.priority` (the child's default, normal, when `None`).
    pub priority: Option<Priority>,
    /// Send again to the next child if the child dies under it.
    pub idempotent: bool,
    /// Receives the call's progress notifications.
    pub on_progress: Option<ProgressFn>,
}
