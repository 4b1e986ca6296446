//! Request counters and latency histograms behind the `stats` method and the gRPC
//! `Stats` call: one [`Stats`] per process, fed by both transports (JSON-RPC methods
//! under their names, gRPC calls under their full method name, `quarry.v1.Quarry/Search`),
//! and mirrored to Prometheus when `--metrics-listen` is on ([`crate::metrics`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::Serialize;

/// Bucket for requests naming a method the server does not have.
pub const UNKNOWN_METHOD: &str = "(unknown)";

/// Latency percentiles in microseconds, from the moment the line was read to the moment
/// the response was queued for writing.
#[derive(Debug, Clone, Serialize, JsonSchema, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Figures for one method.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MethodStats {
    /// Requests answered.
    pub count: u64,
    /// Answered with a result.
    pub ok: u64,
    /// Answered with an error, by `data.kind`.
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles, microseconds.
    pub latency_us: Percentiles,
}

struct MethodEntry {
    ok: u64,
    errors: BTreeMap<String, u64>,
    hist: Histogram<u64>,
}

/// Counters shared by the reader and the request tasks.
#[derive(Default)]
pub struct Stats {
    methods: Mutex<BTreeMap<String, MethodEntry>>,
    /// Lines that were not JSON or not UTF-8.
    pub parse_errors: AtomicU64,
    /// Lines over `--max-message-bytes`.
    pub too_large: AtomicU64,
    /// Messages that were not valid requests.
    pub invalid_requests: AtomicU64,
    /// Notifications received.
    pub notifications: AtomicU64,
    /// Requests refused because the queue was full.
    pub overloaded: AtomicU64,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("overloaded", &Self::get(&self.overloaded))
            .finish_non_exhaustive()
    }
}

impl Stats {
    /// Records one response for `method`: a result, or an error of `kind` (the JSON-RPC
    /// `data.kind`; over gRPC the `ErrorInfo` reason, else the status code's name).
    pub fn record(&self, method: &str, outcome: Result<(), &str>, latency: Duration) {
        crate::metrics::observe(method, outcome, latency);
        let mut map = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        let entry = match map.get_mut(method) {
            Some(e) => e,
            None => map.entry(method.to_owned()).or_insert_with(|| MethodEntry {
                ok: 0,
                errors: BTreeMap::new(),
                hist: Histogram::new(3).expect("3 significant figures is valid"),
            }),
        };
        match outcome {
            Ok(()) => entry.ok += 1,
            Err(kind) => match entry.errors.get_mut(kind) {
                Some(n) => *n += 1,
                None => {
                    entry.errors.insert(kind.to_owned(), 1);
                }
            },
        }
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        entry.hist.saturating_record(us);
    }

    /// Figures per method.
    pub fn methods(&self) -> BTreeMap<String, MethodStats> {
        let map = self.methods.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(name, e)| {
                let h = &e.hist;
                (
                    name.clone(),
                    MethodStats {
                        count: h.len(),
                        ok: e.ok,
                        errors: e.errors.clone(),
                        latency_us: Percentiles {
                            p50: h.value_at_quantile(0.5),
                            p90: h.value_at_quantile(0.9),
                            p99: h.value_at_quantile(0.99),
                            max: h.max(),
                            mean: h.mean(),
                        },
                    },
                )
            })
            .collect()
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Bumps a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused because the queue was full (either transport).
    pub fn refused(&self) {
        Self::bump(&self.overloaded);
        crate::metrics::refused();
    }
}
