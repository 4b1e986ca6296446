//! The state one supervisor's tasks share: the current child (session), the state
//! snapshot, the pending-call table, events and counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::child;
use crate::config::Config;
use crate::error::CallError;
use crate::event::{Event, EventKind, ExitInfo, Notification, State};
use crate::pending::{Outcome, Pending};

pub(crate) struct Session {
    pub(crate) generation: u64,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    pub(crate) tx: mpsc::UnboundedSender<Vec<u8>>,
    pub(crate) last_activity: Mutex<Instant>,
    /// Cancelled to close the child's stdin.
    pub(crate) close_stdin: CancellationToken,
    /// Cancelled once the child is gone: a call that registers after it must not
    /// wait for this child.
    pub(crate) gone: CancellationToken,
}

#[derive(Clone)]
pub(crate) struct Snapshot {
    pub(crate) state: State,
    pub(crate) session: Option<Arc<Session>>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) spawner: child::Spawner,
    pub(crate) snapshot: watch::Sender<Snapshot>,
    pub(crate) pending: Mutex<HashMap<u64, Pending>>,
    pub(crate) next_id: AtomicU64,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) history: Mutex<VecDeque<Event>>,
    pub(crate) notifications: broadcast::Sender<Notification>,
    pub(crate) stop: CancellationToken,
    pub(crate) stopped: CancellationToken,
    pub(crate) waiting: AtomicUsize,
    pub(crate) restarts: AtomicU64,
    pub(crate) last_exit: Mutex<Option<ExitInfo>>,
    pub(crate) created: Instant,
    pub(crate) garbage: AtomicU64,
}

/// Events kept for `history()`.
pub(crate) const HISTORY: usize = 256;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn emit(&self, event: EventKind, fill: impl FnOnce(&mut Event)) {
        let mut e = Event {
            event,
            pid: None,
            exit_code: None,
            signal: None,
            attempt: None,
            delay_ms: None,
            reason: None,
            rss_bytes: None,
            at_ms: self.created.elapsed().as_millis() as u64,
        };
        fill(&mut e);
        tracing::info!(event = ?e.event, pid = e.pid, reason = e.reason.as_deref(), "supervisor event");
        let mut h = lock(&self.history);
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(e.clone());
        let _ = self.events.send(e);
    }

    pub(crate) fn set_state(&self, state: State, session: Option<Arc<Session>>) {
        self.snapshot.send_replace(Snapshot { state, session });
    }

    /// Ends every call of `generation`: replays idempotent ones, fails the others.
    pub(crate) fn end_generation(&self, generation: u64, error: &CallError) {
        let ended: Vec<Pending> = {
            let mut map = lock(&self.pending);
            let ids: Vec<u64> = map
                .iter()
                .filter(|(_, p)| p.generation == generation)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter().filter_map(|id| map.remove(&id)).collect()
        };
        for p in ended {
            let outcome = if p.idempotent {
                Outcome::Replay
            } else {
                Outcome::Done(Err(error.clone()))
            };
            let _ = p.tx.send(outcome);
        }
    }
}
