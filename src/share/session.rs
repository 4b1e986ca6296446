//! The owner's side of a follower's session (the `Session` RPC, GRPC.md §6): the
//! stream's frames are the lines of one JSON-RPC connection, served by the same
//! [`crate::rpc::serve`] as the owner's own host — the same router, scheduler and figures.
//! Watches started on a session are stopped when it ends (the follower went away; a new
//! owner re-arms them if the follower lives on).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::engine::lazy::LazyEngine;
use crate::grpc::proto::JsonRpcFrame;
use crate::rpc::{Router, ServerConfig};

/// What sessions are served with: the owner's router and server settings (its slots and
/// figures shared).
#[derive(Clone)]
pub struct Sessions {
    /// The owner's methods.
    pub router: Router,
    /// The owner's limits, slots and figures.
    pub config: ServerConfig,
    /// The owner's engine (to stop a session's watches).
    pub engine: Arc<LazyEngine>,
}

/// The path `name` would read with `params`, if any: `root`, or `path` of an ingest
/// without `content`.
fn read_path(name: &str, params: Option<&serde_json::value::RawValue>) -> Option<String> {
    let v: Value = serde_json::from_str(params?.get()).ok()?;
    let key = match name {
        "documents/ingest" if v.get("content").is_some_and(|c| !c.is_null()) => return None,
        "documents/ingest" => "path",
        _ => "root",
    };
    v.get(key)?.as_str().map(str::to_owned)
}

/// The bytes one session may buffer each way before it waits, bytes.
const PIPE_BYTES: usize = 1 << 20;

impl Sessions {
    /// The same sessions with every path a method would read (`documents/ingest`
    /// without content, `documents/ingestDir`, `watch/start`) confined to `roots`
    /// (canonical): the TCP endpoint's (GRPC.md §4).
    pub fn confined(&self, roots: &[std::path::PathBuf]) -> Sessions {
        let roots: Arc<Vec<std::path::PathBuf>> = Arc::new(roots.to_vec());
        let mut router = self.router.clone();
        router.wrap_queued(
            &["documents/ingest", "documents/ingestDir", "watch/start"],
            |name, inner| {
                let roots = roots.clone();
                Arc::new(move |params, ctx| {
                    let checked = read_path(name, params.as_deref())
                        .map_or(Ok(()), |p| crate::grpc::confine::confine(&roots, &p));
                    match checked {
                        Ok(()) => inner(params, ctx),
                        Err(e) => Box::pin(async move { Err(e) }),
                    }
                })
            },
        );
        Sessions {
            router,
            config: self.config.clone(),
            engine: self.engine.clone(),
        }
    }

    /// Serves one session: `input` are the follower's frames; the owner's come out of
    /// the returned receiver, ending when the connection does.
    pub fn serve(
        &self,
        mut input: tonic::Streaming<JsonRpcFrame>,
    ) -> mpsc::Receiver<Result<JsonRpcFrame, tonic::Status>> {
        let (follower, server) = tokio::io::duplex(PIPE_BYTES);
        let (server_in, server_out) = tokio::io::split(server);
        let (from_server, mut to_server) = tokio::io::split(follower);
        // `watch/start` request ids of this session, then the watch ids they started.
        let starts: Arc<Mutex<HashSet<String>>> = Arc::default();
        let started: Arc<Mutex<Vec<String>>> = Arc::default();
        let ids = starts.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = input.message().await {
                // Parsed only when it may be one: most frames are not `watch/start`.
                if memchr::memmem::find(&frame.message, b"\"watch/start\"").is_some()
                    && let Ok(v) = serde_json::from_slice::<Value>(&frame.message)
                    && v["method"] == "watch/start"
                {
                    ids.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(v["id"].to_string());
                }
                if to_server.write_all(&frame.message).await.is_err()
                    || to_server.write_all(b"\n").await.is_err()
                {
                    break;
                }
            }
            // End of input: the connection drains and ends, as a host's stdin closing.
            let _ = to_server.shutdown().await;
        });
        let (router, config) = (self.router.clone(), self.config.clone());
        let max = config.max_message_bytes;
        tokio::spawn(async move {
            if let Err(e) = crate::rpc::serve(config, router, server_in, server_out).await {
                tracing::warn!(error = %e, "a follower's session failed");
            }
        });
        let (tx, rx) = mpsc::channel(64);
        let (engine, watches) = (self.engine.clone(), started.clone());
        tokio::spawn(async move {
            let mut lines = FramedRead::new(from_server, LinesCodec::new_with_max_length(max + 1));
            while let Some(Ok(line)) = lines.next().await {
                // Parsed only while a `watch/start` awaits its answer.
                let awaited = !starts.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
                if awaited
                    && let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v.get("method").is_none()
                    && starts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&v["id"].to_string())
                    && let Some(id) = v["result"]["watchId"].as_str()
                {
                    watches
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id.to_owned());
                }
                // A follower that went away is not waited for: the rest is read and dropped.
                let _ = tx
                    .send(Ok(JsonRpcFrame {
                        message: line.into_bytes(),
                    }))
                    .await;
            }
            let ids = std::mem::take(&mut *started.lock().unwrap_or_else(|e| e.into_inner()));
            if let Some(opened) = engine.opened() {
                for id in ids {
                    opened.watches.stop(&id);
                }
            }
        });
        rx
    }
}
