//! `quarry supervise [options] -- CMD …`: the supervisor as a stdio proxy
//! (PROTOCOL.md §10), for hosts that only want a pipe.
//!
//! The host speaks the same protocol to the proxy as to a sidecar. Requests are passed
//! to the current child through `quarry-supervisor` (ids, `_meta.priority`,
//! `timeoutMs`, `progressToken` and `idempotent` honoured), responses come back under
//! the host's own ids, and a child that dies under a request answers it `-32004`
//! (`sidecar_exited`) or, when idempotent, sends it again to the next child. The proxy
//! adds `supervisor/status` and the `supervisor/event` notifications, and passes every
//! child notification (each new `sidecar/ready` included) on to the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use quarry_supervisor::{CallError, CallOptions, Config, Supervisor};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::rpc::Sink;
use crate::rpc::writer::{Outbox, spawn_writer};
use quarry_protocol::control::ProgressNotification;
use quarry_protocol::{
    ErrorKind, Frame, Id, IdKey, Line, LineCodec, Message, Outgoing, Request, Response, RpcError,
    cancel_target, decode_line, split_meta,
};

/// Maps a supervisor call failure to its protocol error (PROTOCOL.md §8, §10).
pub fn call_error(e: CallError) -> RpcError {
    match e {
        CallError::Timeout(d) => RpcError::new(ErrorKind::Timeout, format!("timed out after {d:?}"))
            .with("timeoutMs", d.as_millis() as u64)
            .with("stage", "running"),
        CallError::Cancelled => RpcError::new(ErrorKind::Cancelled, "cancelled by the host"),
        CallError::SidecarExited {
            exit_code,
            signal,
            reason,
            stderr_tail,
        } => RpcError::new(
            ErrorKind::SidecarExited,
            format!("the sidecar exited while the request was in flight ({reason})"),
        )
        .with("exitCode", exit_code)
        .with("signal", signal)
        .with("reason", reason)
        .with("stderrTail", stderr_tail),
        CallError::MemoryLimit {
            rss_bytes,
            limit_bytes,
        } => RpcError::new(
            ErrorKind::SidecarExited,
            format!("the sidecar was restarted over its memory limit ({rss_bytes} > {limit_bytes} bytes)"),
        )
        .with("reason", "memory_limit")
        .with("rssBytes", rss_bytes)
        .with("limitBytes", limit_bytes)
        .with("signal", 9),
        CallError::Unavailable(m) => RpcError::new(ErrorKind::SidecarUnavailable, m),
        CallError::Protocol(m) => RpcError::internal(format!("protocol error: {m}")),
        CallError::Server {
            code,
            kind,
            message,
            data,
        } => {
            let k = kind
                .as_deref()
                .and_then(RpcError::kind_named)
                .unwrap_or(ErrorKind::Internal);
            let mut err = RpcError::new(k, message);
            if let Some(serde_json::Value::Object(map)) = data {
                for (key, v) in map {
                    if key != "kind" {
                        err.data.insert(key, v);
                    }
                }
            }
            if k.code() != code {
                err.data.insert("sidecarCode".into(), json!(code));
            }
            err
        }
    }
}

fn to_raw<T: serde::Serialize>(v: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

struct Proxy {
    sup: Supervisor,
    outbox: Outbox,
    in_flight: Mutex<HashMap<IdKey, CancellationToken>>,
    tasks: tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
    shutdown_replies: Mutex<Vec<(Option<Box<RawValue>>, Sink)>>,
}

impl Proxy {
    fn handle(self: &Arc<Self>, msg: Message, sink: Sink) {
        match msg {
            Message::Response => {}
            Message::Invalid { id, error } => sink.deliver(Response {
                id,
                body: Err(error),
            }),
            Message::Request(Request {
                id: None,
                method,
                params,
            }) => match method.as_str() {
                "notifications/cancelled" | "$/cancelRequest" => {
                    let key = cancel_target(params.as_deref());
                    if let Some(token) =
                        key.and_then(|k| self.in_flight.lock().ok()?.get(&k).cloned())
                    {
                        token.cancel();
                    }
                }
                "shutdown" => self.shutdown.cancel(),
                _ => self.sup.notify(&method, params.as_deref()),
            },
            Message::Request(Request {
                id: Some(id),
                method,
                params,
            }) => self.request(id, method, params, sink),
        }
    }

    fn request(
        self: &Arc<Self>,
        id: Id,
        method: String,
        params: Option<Box<RawValue>>,
        sink: Sink,
    ) {
        let Id { raw, key } = id;
        let reply = |body| {
            sink.deliver(Response {
                id: Some(raw.clone()),
                body,
            })
        };
        if self
            .in_flight
            .lock()
            .map(|m| m.contains_key(&key))
            .unwrap_or(false)
        {
            return reply(Err(RpcError::new(
                ErrorKind::DuplicateId,
                "a request with this id is still in flight",
            )));
        }
        match method.as_str() {
            "supervisor/status" => {
                return reply(
                    to_raw(&self.sup.status()).ok_or_else(|| RpcError::internal("status")),
                );
            }
            "shutdown" => {
                if let Ok(mut v) = self.shutdown_replies.lock() {
                    v.push((Some(raw.clone()), sink.clone()));
                }
                self.shutdown.cancel();
                return;
            }
            _ => {}
        }
        if self.shutdown.is_cancelled() {
            return reply(Err(RpcError::new(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down",
            )));
        }
        let (params, meta) = match split_meta(params) {
            Ok(v) => v,
            Err(e) => return reply(Err(e)),
        };
        let on_progress = meta.progress_token.map(|token| {
            let outbox = self.outbox.clone();
            Arc::new(move |u: quarry_supervisor::ProgressUpdate| {
                let wire = ProgressNotification {
                    progress_token: &token,
                    progress: u.progress,
                    total: u.total,
                    message: u.message.as_deref(),
                };
                if let Some(params) = to_raw(&wire) {
                    outbox.send(Outgoing::Notification {
                        method: "notifications/progress".into(),
                        params,
                    });
                }
            }) as quarry_supervisor::ProgressFn
        });
        let options = CallOptions {
            timeout: meta.timeout_ms.map(std::time::Duration::from_millis),
            priority: Some(meta.priority),
            idempotent: meta.idempotent,
            on_progress,
        };
        let token = CancellationToken::new();
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(key.clone(), token.clone());
        }
        let proxy = self.clone();
        self.tasks.spawn(async move {
            let result = tokio::select! {
                r = proxy.sup.call_raw(&method, params, options) => r.map_err(call_error),
                _ = token.cancelled() => Err(call_error(CallError::Cancelled)),
            };
            if let Ok(mut m) = proxy.in_flight.lock() {
                m.remove(&key);
            }
            sink.deliver(Response {
                id: Some(raw),
                body: result,
            });
        });
    }
}

/// Runs the proxy until its input ends, a signal, or a `shutdown` request; stops the
/// child on the way out. Errors: the supervisor or the signal handlers failed to start.
pub async fn run<R, W>(
    config: Config,
    input: R,
    output: W,
    max_message_bytes: usize,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let broken = CancellationToken::new();
    let (outbox, writer) = spawn_writer(output, broken.clone());
    let sup = Supervisor::spawn(config)?;
    // Child notifications and supervisor events go to the host as they come.
    let mut notes = sup.notifications();
    let out = outbox.clone();
    tokio::spawn(async move {
        loop {
            match notes.recv().await {
                Ok(n) => {
                    if let Ok(params) = RawValue::from_string(n.params.get().to_owned()) {
                        out.send(Outgoing::Notification {
                            method: n.method.into(),
                            params,
                        });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    tracing::warn!(k, "dropped child notifications: the host reads too slowly");
                }
                Err(_) => return,
            }
        }
    });
    let mut events = sup.events();
    let out = outbox.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(params) = to_raw(&e) {
                        out.send(Outgoing::Notification {
                            method: "supervisor/event".into(),
                            params,
                        });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    let proxy = Arc::new(Proxy {
        sup: sup.clone(),
        outbox: outbox.clone(),
        in_flight: Mutex::new(HashMap::new()),
        tasks: tokio_util::task::TaskTracker::new(),
        shutdown: CancellationToken::new(),
        shutdown_replies: Mutex::new(Vec::new()),
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut frames = FramedRead::with_capacity(input, LineCodec::new(max_message_bytes), 64 * 1024);
    // Once stopping begins (shutdown, a signal, end of input, a broken stdout), the
    // child is drained and stopped while input is still read: every request that
    // arrives meanwhile is answered `shutting_down` (PROTOCOL.md §7) before the exit.
    let stop = async {
        proxy.shutdown.cancelled().await;
        sup.shutdown().await;
        proxy.tasks.close();
        proxy.tasks.wait().await;
    };
    tokio::pin!(stop);
    let mut eof = false;
    let mut output_broken = false;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = term.recv() => proxy.shutdown.cancel(),
            _ = int.recv() => proxy.shutdown.cancel(),
            _ = broken.cancelled(), if !output_broken => {
                output_broken = true;
                proxy.shutdown.cancel();
            }
            frame = frames.next(), if !eof => match frame {
                Some(Ok(Frame::Line(bytes))) => match decode_line(&bytes) {
                    Line::Error(err) => Sink::Direct(outbox.clone()).deliver(Response { id: None, body: Err(err) }),
                    Line::Single(msg) => proxy.handle(msg, Sink::Direct(outbox.clone())),
                    Line::Batch(msgs) => {
                        let sink = Sink::for_line(&outbox, &msgs);
                        for msg in msgs {
                            proxy.handle(msg, sink.clone());
                        }
                    }
                },
                Some(Ok(Frame::TooLarge { len })) => Sink::Direct(outbox.clone()).deliver(Response {
                    id: None,
                    body: Err(RpcError::message_too_large(len, max_message_bytes)),
                }),
                Some(Err(_)) | None => {
                    eof = true;
                    proxy.shutdown.cancel();
                }
            },
        }
    }
    let replies = proxy
        .shutdown_replies
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for (id, sink) in replies {
        if let Some(ok) = to_raw(&json!({})) {
            sink.deliver(Response { id, body: Ok(ok) });
        }
    }
    outbox.close().await;
    let _ = writer.await;
    Ok(())
}
