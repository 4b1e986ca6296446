//! Request counters and latency histograms behind the `stats` method.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::Serialize;

use quarry_protocol::ErrorKind;

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
    errors: BTreeMap<&'static str, u64>,
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

impl Stats {
    /// Records one response for `method`.
    pub fn record(&self, method: &str, outcome: Result<(), ErrorKind>, latency: Duration) {
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
            Err(kind) => *entry.errors.entry(kind.as_str()).or_default() += 1,
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
                        errors: e
                            .errors
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), *v))
                            .collect(),
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
}
