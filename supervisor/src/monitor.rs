//! The monitors of a ready child: periodic `health` checks (hang detection) and its
//! resident memory.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::event::EventKind;
use crate::pending::internal_call;
use crate::shared::{Session, Shared, lock};

pub(crate) fn rss_of(sys: &mut sysinfo::System, pid: u32) -> u64 {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate};
    let pid = Pid::from_u32(pid);
    sys.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing().with_memory(),
    );
    sys.process(pid).map_or(0, |p| p.memory())
}

/// Sends `health` every `health_interval` (whatever the previous check is doing, so a
/// hang is seen within `interval × failures + timeout`); after `health_failures` misses
/// in a row with no other message from the child meanwhile, sends the reason on
/// `hung_tx` and ends.
pub(crate) fn spawn_health(
    shared: Arc<Shared>,
    session: Arc<Session>,
    hung_tx: mpsc::Sender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = &shared.config;
        let mut tick = tokio::time::interval(cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await; // the first tick is immediate: start one interval in
        let mut checks = tokio::task::JoinSet::new();
        let mut misses = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let (shared, session) = (shared.clone(), session.clone());
                    checks.spawn(async move {
                        let asked = Instant::now();
                        let ok = internal_call(&shared, &session, "health", shared.config.health_timeout)
                            .await
                            .is_ok();
                        (asked, ok)
                    });
                }
                Some(Ok((asked, ok))) = checks.join_next(), if !checks.is_empty() => {
                    if ok {
                        misses = 0;
                        continue;
                    }
                    // A child busy writing (progress, results) is not hung.
                    if *lock(&session.last_activity) > asked {
                        continue;
                    }
                    misses += 1;
                    shared.emit(EventKind::Unhealthy, |e| {
                        e.pid = Some(session.pid);
                        e.reason = Some(format!(
                            "health check missed ({misses}/{})",
                            cfg.health_failures
                        ));
                    });
                    if misses >= cfg.health_failures {
                        let _ = hung_tx
                            .send(format!("hung: {misses} health checks missed"))
                            .await;
                        return;
                    }
                }
            }
        }
    })
}
