//! The child's I/O, in the protocol's own vocabulary (`quarry-protocol`): request lines
//! to its stdin, responses and notifications from its stdout (the bounded line codec),
//! its stderr tail.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use quarry_protocol::client::{Incoming, decode_incoming, encode_request};
use quarry_protocol::control::ProgressUpdate;
use quarry_protocol::{Frame, LineCodec, OutgoingMeta, merge_meta};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::config::CallOptions;
use crate::error::CallError;
use crate::event::Notification;
use crate::pending::Outcome;
use crate::shared::{Session, Shared, lock};

/// The request line for call `id`: `_meta` carries the priority, what is left of the
/// deadline, and the progress token (the call's id) when progress is wanted.
///
/// Errors: params that are not an object cannot carry `_meta`.
pub(crate) fn request_line(
    id: u64,
    method: &str,
    params: Option<&RawValue>,
    options: &CallOptions,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, String> {
    let meta = OutgoingMeta {
        priority: options.priority,
        timeout_ms: deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .as_millis()
                .max(1) as u64
        }),
        progress_token: options.on_progress.is_some().then_some(id),
        // Replay is the supervisor's business, not the child's.
        idempotent: false,
    };
    let params = merge_meta(params, &meta).map_err(|e| e.message)?;
    let mut line = Vec::new();
    encode_request(id, method, params.as_deref(), &mut line);
    Ok(line)
}

/// Reads the child's stdout until it closes: each line goes to [`deliver`]; lines over
/// `max` bytes are dropped as they arrive and counted as garbage. `on_ready` runs once,
/// at the first `sidecar/ready`.
pub(crate) async fn read_stdout<R: tokio::io::AsyncRead + Unpin>(
    out: R,
    max: usize,
    shared: &Shared,
    session: &Session,
    mut on_ready: impl FnMut(),
) {
    let mut frames = FramedRead::with_capacity(out, LineCodec::new(max), 64 * 1024);
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::Line(line)) => {
                if deliver(shared, session, &line) {
                    on_ready();
                }
            }
            Ok(Frame::TooLarge { len }) => {
                *lock(&session.last_activity) = Instant::now();
                shared.garbage.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(len, "sidecar wrote an over-long line on stdout; dropped");
            }
            Err(_) => return,
        }
    }
}

/// Handles one line from the child's stdout; `true` when it was the `sidecar/ready`
/// notification (a parsed message, not a substring of some line).
pub(crate) fn deliver(shared: &Shared, session: &Session, line: &[u8]) -> bool {
    *lock(&session.last_activity) = Instant::now();
    let msg = match decode_incoming(line) {
        Ok(m) => m,
        Err(_) => {
            let n = shared.garbage.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    garbage_lines = n,
                    line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                    "sidecar wrote a line that is not a JSON-RPC message on stdout; ignored"
                );
            }
            return false;
        }
    };
    match msg {
        Incoming::Notification { method, params } if method == "notifications/progress" => {
            if let Some(update) =
                params.and_then(|p| serde_json::from_str::<ProgressUpdate>(p.get()).ok())
            {
                let cb = update.progress_token.as_u64().and_then(|id| {
                    lock(&shared.pending)
                        .get(&id)
                        .filter(|c| c.generation == session.generation)
                        .and_then(|c| c.progress.clone())
                });
                if let Some(cb) = cb {
                    cb(update);
                }
            }
            false
        }
        Incoming::Notification { method, params } => {
            let ready = method == "sidecar/ready";
            let params: Arc<RawValue> = params
                .map(|p| Arc::from(p.to_owned()))
                .unwrap_or_else(|| Arc::from(RawValue::NULL.to_owned()));
            let _ = shared.notifications.send(Notification {
                method,
                params,
                generation: session.generation,
            });
            ready
        }
        Incoming::Response { id: None, .. } => {
            shared.garbage.fetch_add(1, Ordering::Relaxed);
            false
        }
        Incoming::Response { id: Some(id), body } => {
            let pending = {
                let mut map = lock(&shared.pending);
                match map.get(&id) {
                    Some(p) if p.generation == session.generation => map.remove(&id),
                    _ => None,
                }
            };
            // None: cancelled, timed out, or not this child's.
            if let Some(p) = pending {
                let result = body.map(ToOwned::to_owned).map_err(|e| CallError::Server {
                    code: e.code,
                    kind: e.kind().map(str::to_owned),
                    message: e.message,
                    data: e.data,
                });
                let _ = p.tx.send(Outcome::Done(result));
            }
            false
        }
    }
}

/// Keeps `line` in the stderr ring (at most `keep` lines) and logs it.
pub(crate) fn push_tail(tail: &Mutex<VecDeque<String>>, keep: usize, line: &[u8]) {
    let text = String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned();
    tracing::info!(target: "sidecar", "{text}");
    let mut t = lock(tail);
    if t.len() >= keep.max(1) {
        t.pop_front();
    }
    t.push_back(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_protocol::Priority;
    use serde_json::{Value, json};

    #[test]
    fn meta_is_merged_into_params() {
        let opts = CallOptions {
            priority: Some(Priority::High),
            ..CallOptions::default()
        };
        let p = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let line = request_line(7, "m", Some(&p), &opts, None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["params"], json!({"_meta": {"priority": "high"}, "a": 1}));
        let empty = RawValue::from_string("{}".into()).unwrap();
        let line = request_line(8, "m", Some(&empty), &opts, None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["params"], json!({"_meta": {"priority": "high"}}));
        let line = request_line(9, "m", None, &CallOptions::default(), None).unwrap();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert!(v.get("params").is_none());
    }
}
