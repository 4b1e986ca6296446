//! The pending-call table: one entry per call written to a child, answered by its
//! response, its child's end, or dropped (which tells the child to stop the work).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::config::{CallOptions, ProgressFn};
use crate::error::CallError;
use quarry_protocol::client::encode_notification;
use quarry_protocol::control::{CancelledParams, IdOrToken};

use crate::io::request_line;
use crate::shared::{Session, Shared, lock};

pub(crate) enum Outcome {
    Done(Result<Box<RawValue>, CallError>),
    Replay,
}

pub(crate) struct Pending {
    pub(crate) generation: u64,
    pub(crate) tx: oneshot::Sender<Outcome>,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) idempotent: bool,
}

/// Removes a call's pending entry and tells the child to stop it, unless it finished.
pub(crate) struct CallGuard {
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) session: Arc<Session>,
    pub(crate) finished: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if lock(&self.shared.pending).remove(&self.id).is_some() {
            let params = CancelledParams {
                request_id: IdOrToken::Int(self.id as i64),
                reason: None,
            };
            if let Ok(params) = serde_json::value::to_raw_value(&params) {
                let mut line = Vec::new();
                encode_notification("notifications/cancelled", Some(&params), &mut line);
                let _ = self.session.tx.send(line);
            }
        }
    }
}

pub(crate) struct WaitingGuard<'a>(pub(crate) &'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One internal call (health, shutdown) on `session`, bypassing readiness.
pub(crate) async fn internal_call(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    method: &str,
    timeout: Duration,
) -> Result<Box<RawValue>, CallError> {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(
        id,
        Pending {
            generation: session.generation,
            tx,
            progress: None,
            idempotent: false,
        },
    );
    let mut guard = CallGuard {
        shared: shared.clone(),
        id,
        session: session.clone(),
        finished: false,
    };
    let line = request_line(id, method, None, &CallOptions::default(), None)
        .map_err(CallError::Protocol)?;
    let _ = session.tx.send(line);
    let r = tokio::time::timeout(timeout, rx).await;
    guard.finished = r.is_ok();
    match r {
        Ok(Ok(Outcome::Done(r))) => r,
        Ok(_) => Err(CallError::Unavailable("sidecar gone".into())),
        Err(_) => {
            // Leave no pending entry behind, but do not send a cancellation for health.
            lock(&shared.pending).remove(&id);
            guard.finished = true;
            Err(CallError::Timeout(timeout))
        }
    }
}

/// Fails every pending call (no child will answer them).
pub(crate) fn fail_all(shared: &Shared, why: &str) {
    let all: Vec<Pending> = lock(&shared.pending).drain().map(|(_, p)| p).collect();
    for p in all {
        let _ =
            p.tx.send(Outcome::Done(Err(CallError::Unavailable(why.to_owned()))));
    }
}
