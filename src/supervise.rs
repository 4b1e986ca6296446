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

use std::sync::Arc;

use quarry_protocol::control::ProgressNotification;
use quarry_protocol::{ErrorKind, Outgoing, RpcError, split_meta};
use quarry_supervisor::{CallError, CallOptions, Config, Supervisor};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::rpc::connection::{Call, Connection, Handler, Responder, ShutdownReplies, Sink};
use crate::rpc::writer::{Outbox, spawn_writer};

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

/// Documents what the proxy answers and sends besides the sidecar's own protocol
/// (PROTOCOL.md §10): `supervisor/status`, and the `supervisor/event` notification.
pub fn document(router: &mut crate::rpc::Router) -> Vec<crate::rpc::schema::OutgoingNotification> {
    router.document::<crate::rpc::control::Empty, quarry_supervisor::Status>(
        "supervisor/status",
        "Answered by `quarry supervise` itself: state, child pid, restarts, uptime, how the last child ended, garbage lines.",
        crate::rpc::MethodKind::Control,
    );
    vec![crate::rpc::schema::OutgoingNotification {
        name: "supervisor/event",
        summary: "Sent by `quarry supervise`: a child started, became ready, missed a health check, exited, is restarted, went over a limit; the supervisor gave up or stopped.",
        params: |g| g.subschema_for::<quarry_supervisor::Event>(),
    }]
}

fn to_raw<T: serde::Serialize>(v: &T) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(v).ok()
}

/// The proxy: the [`Handler`] of the host's connection that passes requests on to the
/// supervised child.
struct Proxy {
    sup: Supervisor,
    outbox: Outbox,
    tasks: tokio_util::task::TaskTracker,
    /// Cancelled when stopping begins.
    shutdown: CancellationToken,
    shutdown_replies: ShutdownReplies,
}

impl Handler for Proxy {
    fn responder(
        &self,
        id: Option<Box<RawValue>>,
        sink: Sink,
        _method: Option<&str>,
        _received: Instant,
    ) -> Responder {
        Responder::new(id, sink)
    }

    fn request(self: &Arc<Self>, call: Call) {
        let Call {
            method,
            params,
            responder,
            in_flight,
            ..
        } = call;
        if method == "supervisor/status" {
            return responder
                .send(to_raw(&self.sup.status()).ok_or_else(|| RpcError::internal("status")));
        }
        if self.shutdown.is_cancelled() {
            return responder.send(Err(RpcError::new(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down",
            )));
        }
        let (params, meta) = match split_meta(params) {
            Ok(v) => v,
            Err(e) => return responder.send(Err(e)),
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
        let proxy = self.clone();
        self.tasks.spawn(async move {
            let result = tokio::select! {
                r = proxy.sup.call_raw(&method, params, options) => r.map_err(call_error),
                _ = in_flight.cancel.cancelled() => Err(call_error(CallError::Cancelled)),
            };
            drop(in_flight);
            responder.send(result);
        });
    }

    fn notification(
        self: &Arc<Self>,
        method: String,
        params: Option<Box<RawValue>>,
        _received: Instant,
    ) {
        self.sup.notify(&method, params.as_deref());
    }

    /// Begins stopping (once): the child is drained and stopped, then every `shutdown`
    /// request is answered and the connection finishes. Input is read meanwhile, so
    /// requests that arrive are answered `-32003` before the exit (PROTOCOL.md §7).
    fn shutdown(self: &Arc<Self>, reply: Option<Responder>) {
        if let Some(r) = reply {
            self.shutdown_replies.push(r);
        }
        self.shutdown.cancel();
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
        tasks: tokio_util::task::TaskTracker::new(),
        shutdown: CancellationToken::new(),
        shutdown_replies: ShutdownReplies::new(),
    });
    let connection = Connection::new(proxy.clone(), outbox.clone(), max_message_bytes)?;
    // Stopping: drain and stop the child (calls in flight are answered by it), wait for
    // the call tasks, answer `shutdown` requests, then let the connection finish.
    let finished = CancellationToken::new();
    let stopper = {
        let (proxy, finished) = (proxy.clone(), finished.clone());
        tokio::spawn(async move {
            proxy.shutdown.cancelled().await;
            proxy.sup.shutdown().await;
            proxy.tasks.close();
            proxy.tasks.wait().await;
            proxy.shutdown_replies.answer_all();
            finished.cancel();
        })
    };
    connection.run(input, broken, finished).await;
    let _ = stopper.await;
    outbox.close().await;
    let _ = writer.await;
    Ok(())
}
