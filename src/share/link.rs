//! A follower's link to the owner of its data folder (GRPC.md §6): one `Session` stream
//! over the owner's Unix socket carrying JSON-RPC messages. Each engine request of the
//! follower's host goes out under a link-local id with its `_meta` (deadline left,
//! priority, a progress token when the host asked for progress); the owner's response,
//! progress and `watch/event`s come back and are handed to the waiting request or to the
//! host. Dropping a call's future (the host cancelled, the deadline passed) sends
//! `notifications/cancelled` for it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quarry_protocol::client::{self, Incoming};
use quarry_protocol::{ErrorKind, RpcError};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::grpc::proto::{JsonRpcFrame, quarry_client::QuarryClient};
use crate::rpc::{Notifier, Progress, RequestContext};

/// The owner went away while a call was out (its answer will never come).
#[derive(Debug, Clone, Copy)]
pub struct Lost;

type Reply = Result<Result<Box<RawValue>, RpcError>, Lost>;

struct Shared {
    pending: Mutex<HashMap<u64, (oneshot::Sender<Reply>, Progress)>>,
    closed: CancellationToken,
}

/// A live session with the owner.
pub struct Link {
    /// The owner's pid.
    pub owner: u32,
    out: mpsc::UnboundedSender<JsonRpcFrame>,
    shared: Arc<Shared>,
    next: AtomicU64,
}

impl Link {
    /// Opens a session with the owner listening on `socket`, presenting `token` if the
    /// owner has one; `watch/event`s from the owner go to `events`.
    ///
    /// Errors: nothing listens there, or the owner refuses the session.
    pub async fn connect(
        owner: u32,
        socket: &Path,
        token: Option<&str>,
        events: Notifier,
    ) -> Result<Arc<Link>, String> {
        let channel = crate::grpc::endpoint::connect(socket).await.map_err(|e| {
            format!(
                "cannot reach the owner (pid {owner}) at {}: {e}",
                socket.display()
            )
        })?;
        let mut client = QuarryClient::new(channel)
            .max_decoding_message_size(crate::grpc::endpoint::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::grpc::endpoint::MAX_MESSAGE_BYTES);
        let (out, rx) = mpsc::unbounded_channel();
        let closed = CancellationToken::new();
        // The request side ends with the response side, so that the owner's drain never
        // waits for a half-open session.
        let outgoing = futures_util::StreamExt::take_until(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            closed.clone().cancelled_owned(),
        );
        let mut request = tonic::Request::new(outgoing);
        if let Some(t) = token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            request.metadata_mut().insert("authorization", v);
        }
        let mut incoming = client
            .session(request)
            .await
            .map_err(|s| format!("the owner (pid {owner}) refused a session: {}", s.message()))?
            .into_inner();
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            closed,
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = incoming.message().await {
                dispatch(&reader, &events, &frame.message);
            }
            // The owner is gone: every call still out is answered `Lost`.
            reader.closed.cancel();
            let pending =
                std::mem::take(&mut *reader.pending.lock().unwrap_or_else(|e| e.into_inner()));
            for (_, (tx, _)) in pending {
                let _ = tx.send(Err(Lost));
            }
            tracing::warn!(owner, "the session with the data folder's owner ended");
        });
        tracing::info!(owner, socket = %socket.display(), "following the data folder's owner");
        Ok(Arc::new(Link {
            owner,
            out,
            shared,
            next: AtomicU64::new(1),
        }))
    }

    /// Resolves when the session ends.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await;
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Carries `method` with `params` (raw, `_meta` removed) and the request's context
    /// to the owner and waits for its answer.
    ///
    /// Errors: `Err(Lost)` when the owner went away first; otherwise the owner's own
    /// answer, result or error.
    pub async fn call(
        &self,
        method: &str,
        params: Option<&RawValue>,
        ctx: &RequestContext,
    ) -> Result<Result<Box<RawValue>, RpcError>, Lost> {
        if self.is_closed() {
            return Err(Lost);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut params: Map<String, Value> = match params.map(|p| serde_json::from_str(p.get())) {
            Some(Ok(Value::Object(m))) => m,
            _ => Map::new(),
        };
        let mut meta = Map::new();
        if ctx.progress.is_enabled() {
            meta.insert("progressToken".into(), json!(id));
        }
        if let Some(deadline) = ctx.deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            meta.insert("timeoutMs".into(), json!(left.as_millis().max(1) as u64));
        }
        meta.insert(
            "priority".into(),
            serde_json::to_value(ctx.priority).unwrap_or(Value::Null),
        );
        params.insert("_meta".into(), Value::Object(meta));
        let Ok(params) = serde_json::value::to_raw_value(&params) else {
            return Ok(Err(RpcError::internal("params could not be encoded")));
        };
        let mut request = Vec::new();
        client::encode_request(id, method, Some(&params), &mut request);
        let (tx, rx) = oneshot::channel();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (tx, ctx.progress.clone()));
        if !self.send(request) {
            self.shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(Lost);
        }
        // Dropped before the answer (cancelled, deadline): cancel it at the owner too.
        let guard = CancelOnDrop {
            link: self,
            id,
            armed: true,
        };
        let reply = rx.await.unwrap_or(Err(Lost));
        let mut guard = guard;
        guard.armed = false;
        reply
    }

    /// Sends one encoded line (its newline dropped: a frame is one message).
    fn send(&self, mut line: Vec<u8>) -> bool {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        self.out.send(JsonRpcFrame { message: line }).is_ok()
    }
}

/// Sends `notifications/cancelled` for a call dropped before its answer.
struct CancelOnDrop<'a> {
    link: &'a Link,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.link
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
            if let Ok(params) = serde_json::value::to_raw_value(&json!({"requestId": self.id})) {
                let mut line = Vec::new();
                client::encode_notification("notifications/cancelled", Some(&params), &mut line);
                self.link.send(line);
            }
        }
    }
}

/// One message from the owner (decoded by the protocol crate's client role): a
/// response to a call (its result kept raw), a progress notification for a call, or a
/// notification for the host (`watch/event`).
fn dispatch(shared: &Shared, events: &Notifier, bytes: &[u8]) {
    let message = match client::decode_incoming(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "an unreadable message from the owner");
            return;
        }
    };
    match message {
        Incoming::Response { id: Some(id), body } => {
            let waiting = shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some((tx, _)) = waiting {
                let _ = tx.send(Ok(body.map(|r| r.to_owned()).map_err(error_of)));
            }
        }
        Incoming::Response { id: None, .. } => {}
        Incoming::Notification { method, params } => match method.as_str() {
            "notifications/progress" => {
                let Some(p) = params.and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
                else {
                    return;
                };
                let Some(id) = p.get("progressToken").and_then(Value::as_u64) else {
                    return;
                };
                let progress = shared
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&id)
                    .map(|(_, p)| p.clone());
                if let (Some(progress), Some(done)) =
                    (progress, p.get("progress").and_then(Value::as_f64))
                {
                    progress.report(
                        done,
                        p.get("total").and_then(Value::as_f64),
                        p.get("message").and_then(Value::as_str),
                    );
                }
            }
            "watch/event" => {
                if let Some(params) = params {
                    events.send("watch/event", &params);
                }
            }
            // `sidecar/ready` of the session, and anything else, is not the host's.
            _ => {}
        },
    }
}

/// The owner's error object as a protocol error (its `data.kind` as the kind).
fn error_of(error: client::ErrorResponse) -> RpcError {
    let kind = error
        .kind()
        .and_then(kind_named)
        .unwrap_or(ErrorKind::Internal);
    let mut data = match error.data {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    data.remove("kind");
    let mut e = RpcError::new(kind, error.message);
    e.data = data;
    e
}

/// The kind whose `data.kind` string is `name`.
fn kind_named(name: &str) -> Option<ErrorKind> {
    ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
}
