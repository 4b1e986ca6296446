//! Stopping a child: `shutdown` → drain → close stdin → `SIGTERM`+`SIGCONT` to the
//! group → `SIGKILL`.

use std::sync::Arc;

use rustix::process::Signal;

use crate::child;
use crate::event::State;
use crate::pending::internal_call;
use crate::shared::{Session, Shared};

pub(crate) fn signal_group_kill(pid: u32) {
    child::signal_group(pid, Signal::KILL);
}

/// `shutdown` → drain → close stdin → SIGTERM+SIGCONT → SIGKILL.
pub(crate) async fn stop_child(
    shared: &Arc<Shared>,
    child: &mut tokio::process::Child,
    session: &Arc<Session>,
) {
    let cfg = &shared.config;
    shared.set_state(State::Stopping, None);
    let pid = session.pid;
    let graceful = async {
        let _ = internal_call(shared, session, "shutdown", cfg.stop_timeout).await;
        child.wait().await
    };
    if tokio::time::timeout(cfg.stop_timeout, graceful)
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sidecar did not stop after shutdown; closing stdin");
    session.close_stdin.cancel();
    if tokio::time::timeout(cfg.term_timeout, child.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sending SIGTERM to the sidecar's process group");
    child::signal_group(pid, Signal::TERM);
    child::signal_group(pid, Signal::CONT);
    if tokio::time::timeout(cfg.term_timeout, child.wait())
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(pid, "sending SIGKILL to the sidecar's process group");
    signal_group_kill(pid);
    let _ = child.wait().await;
}
