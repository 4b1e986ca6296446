//! The restart loop: spawn a child, wait for `sidecar/ready`, serve it until it ends
//! (exit, hang, memory limit, stop), end its calls, and ask the policy what next.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::child;
use crate::error::CallError;
use crate::event::{EventKind, ExitInfo, State};
use crate::io::{push_tail, read_stdout};
use crate::monitor::{rss_of, spawn_health};
use crate::pending::fail_all;
use crate::policy::{Decision, GiveUpReason, RestartState};
use crate::shared::{Session, Shared, lock};
use crate::stop::{signal_group_kill, stop_child};

pub(crate) enum End {
    /// It exited (or was killed by someone else): the status says how.
    Exited(std::process::ExitStatus),
    /// We killed it (`SIGKILL`): hung, start timeout, memory limit.
    Killed { reason: String, memory: Option<u64> },
    /// It could not be spawned or waited for: no exit code, no signal.
    Failed { reason: String },
    /// Stopped on request.
    Stop,
}

pub(crate) async fn manage(shared: Arc<Shared>) {
    let mut policy = RestartState::new(shared.config.restart.clone());
    let mut generation = 0u64;
    loop {
        generation += 1;
        shared.set_state(State::Starting, None);
        let started = Instant::now();
        let (end, ready, pid, tail) = match shared.spawner.spawn(shared.config.child.clone()).await
        {
            Ok(child) => run_child(&shared, child, generation, started).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn the sidecar");
                (
                    End::Failed {
                        reason: format!("spawn failed: {e}"),
                    },
                    false,
                    None,
                    Vec::new(),
                )
            }
        };
        let (code, signal, reason, memory) = match &end {
            End::Exited(st) => {
                let (c, s) = child::describe(st);
                (
                    c,
                    s,
                    if s.is_some() {
                        "killed by a signal".to_owned()
                    } else {
                        "exited".to_owned()
                    },
                    None,
                )
            }
            End::Killed { reason, memory } => (None, Some(9), reason.clone(), *memory),
            End::Failed { reason } => (None, None, reason.clone(), None),
            End::Stop => (None, None, "stopped".to_owned(), None),
        };
        let error = match memory {
            Some(rss) => CallError::MemoryLimit {
                rss_bytes: rss,
                limit_bytes: shared.config.max_rss.unwrap_or(0),
            },
            None => CallError::SidecarExited {
                exit_code: code,
                signal,
                reason: reason.clone(),
                stderr_tail: tail,
            },
        };
        shared.end_generation(generation, &error);
        if let End::Stop = end {
            shared.set_state(State::Stopped, None);
            fail_all(&shared, "the supervisor is stopped");
            shared.emit(EventKind::Stopped, |e| e.pid = pid);
            shared.stopped.cancel();
            return;
        }
        *lock(&shared.last_exit) = Some(ExitInfo {
            exit_code: code,
            signal,
            reason: reason.clone(),
        });
        shared.emit(EventKind::Exited, |e| {
            e.pid = pid;
            e.exit_code = code;
            e.signal = signal;
            e.reason = Some(reason.clone());
        });
        let failure = !(code == Some(0) && memory.is_none());
        match policy.on_exit(Instant::now(), started, ready, failure) {
            Decision::Restart { delay, attempt } => {
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                shared.set_state(State::Restarting, None);
                shared.emit(EventKind::Restarting, |e| {
                    e.attempt = Some(attempt);
                    e.delay_ms = Some(delay.as_millis() as u64);
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.stop.cancelled() => {
                        shared.set_state(State::Stopped, None);
                        fail_all(&shared, "the supervisor is stopped");
                        shared.emit(EventKind::Stopped, |_| {});
                        shared.stopped.cancel();
                        return;
                    }
                }
            }
            Decision::Stop => {
                shared.set_state(State::Stopped, None);
                fail_all(
                    &shared,
                    "the sidecar exited and the policy does not restart it",
                );
                shared.emit(EventKind::Stopped, |e| {
                    e.reason = Some("not restarted".into())
                });
                shared.stopped.cancel();
                return;
            }
            Decision::GiveUp { reason } => {
                shared.set_state(State::GaveUp, None);
                fail_all(&shared, "the supervisor gave up restarting the sidecar");
                shared.emit(EventKind::GaveUp, |e| {
                    e.reason = Some(match reason {
                        GiveUpReason::Intensity => "restart intensity exceeded".into(),
                        GiveUpReason::NeverReady => "the sidecar never became ready".into(),
                    })
                });
                // Stay given up until shutdown.
                shared.stop.cancelled().await;
                shared.emit(EventKind::Stopped, |_| {});
                shared.stopped.cancel();
                return;
            }
        }
    }
}

/// Runs one child until it ends. Returns how, whether it became ready, its pid and
/// its stderr tail.
pub(crate) async fn run_child(
    shared: &Arc<Shared>,
    mut child: tokio::process::Child,
    generation: u64,
    started: Instant,
) -> (End, bool, Option<u32>, Vec<String>) {
    let pid = child.id().unwrap_or(0);
    shared.emit(EventKind::Started, |e| e.pid = Some(pid));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));

    // stderr: always drained, into tracing and the ring buffer.
    if let Some(mut err) = stderr {
        let tail = tail.clone();
        let keep = shared.config.stderr_lines;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut partial = Vec::new();
            loop {
                let n = match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                partial.extend_from_slice(&buf[..n]);
                while let Some(i) = memchr::memchr(b'\n', &partial) {
                    let line: Vec<u8> = partial.drain(..=i).collect();
                    push_tail(&tail, keep, &line[..line.len() - 1]);
                }
                if partial.len() > 4096 {
                    push_tail(&tail, keep, &partial);
                    partial.clear();
                }
            }
        });
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let session = Arc::new(Session {
        generation,
        pid,
        started,
        tx,
        last_activity: Mutex::new(Instant::now()),
        close_stdin: CancellationToken::new(),
        gone: CancellationToken::new(),
    });

    // stdin writer; `close_stdin` closes it.
    let close = session.close_stdin.clone();
    let writer = stdin.map(|mut stdin| {
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    l = rx.recv() => match l {
                        Some(l) => l,
                        None => break,
                    },
                    _ = close.cancelled() => break,
                };
                let mut batch = line;
                while let Ok(more) = rx.try_recv() {
                    batch.extend_from_slice(&more);
                    if batch.len() > 1 << 20 {
                        break;
                    }
                }
                if stdin.write_all(&batch).await.is_err() {
                    break;
                }
                let _ = stdin.flush().await;
            }
            drop(stdin);
        })
    });

    // stdout reader.
    let (ready_tx, mut ready_rx) = oneshot::channel::<()>();
    let reader = stdout.map(|out| {
        let shared = shared.clone();
        let session = session.clone();
        let max = shared.config.max_line_bytes;
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            read_stdout(out, max, &shared, &session, || {
                if let Some(t) = ready_tx.take() {
                    let _ = t.send(());
                }
            })
            .await;
        })
    });

    let tail_now = |t: &Arc<Mutex<VecDeque<String>>>| lock(t).iter().cloned().collect::<Vec<_>>();
    let kill = |child: &mut tokio::process::Child| {
        signal_group_kill(pid);
        let _ = child.start_kill();
    };

    // Wait for readiness.
    let mut ready = false;
    let end = tokio::select! {
        r = &mut ready_rx => {
            if r.is_ok() {
                ready = true;
                None
            } else {
                // stdout closed before ready: wait for the exit status.
                Some(match child.wait().await {
                    Ok(st) => End::Exited(st),
                    Err(e) => End::Failed { reason: format!("wait failed: {e}") },
                })
            }
        }
        st = child.wait() => Some(match st {
            Ok(st) => End::Exited(st),
            Err(e) => End::Failed { reason: format!("wait failed: {e}") },
        }),
        _ = tokio::time::sleep(shared.config.start_timeout) => {
            kill(&mut child);
            let _ = child.wait().await;
            Some(End::Killed { reason: "start timeout: no sidecar/ready".into(), memory: None })
        }
        _ = shared.stop.cancelled() => {
            kill(&mut child);
            let _ = child.wait().await;
            Some(End::Stop)
        }
    };
    let end = match end {
        Some(e) => e,
        None => {
            shared.set_state(State::Ready, Some(session.clone()));
            shared.emit(EventKind::Ready, |e| e.pid = Some(pid));
            serve_child(shared, &mut child, &session).await
        }
    };
    // Not ready any more: new calls wait for the next child.
    session.gone.cancel();
    if shared.snapshot.borrow().state == State::Ready {
        shared.set_state(State::Starting, None);
    }
    if let Some(w) = writer {
        w.abort();
    }
    // Let the reader deliver what the child wrote before it died, then stop it.
    if let Some(r) = reader {
        let _ = tokio::time::timeout(Duration::from_millis(200), r).await;
    }
    let tail = tail_now(&tail);
    (end, ready, Some(pid), tail)
}

/// Serves a ready child until it exits, hangs, goes over its memory limit or we stop.
pub(crate) async fn serve_child(
    shared: &Arc<Shared>,
    child: &mut tokio::process::Child,
    session: &Arc<Session>,
) -> End {
    let cfg = &shared.config;
    let pid = session.pid;
    let (hung_tx, mut hung_rx) = mpsc::channel::<String>(1);
    let health = spawn_health(shared.clone(), session.clone(), hung_tx);
    let mut sys = sysinfo::System::new();
    let mut rss_tick = tokio::time::interval(cfg.rss_interval);
    rss_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            st = child.wait() => break match st {
                Ok(st) => End::Exited(st),
                Err(e) => End::Failed { reason: format!("wait failed: {e}") },
            },
            reason = hung_rx.recv() => {
                let reason = reason.unwrap_or_else(|| "hung".into());
                signal_group_kill(pid);
                let _ = child.wait().await;
                break End::Killed { reason, memory: None };
            }
            _ = rss_tick.tick(), if cfg.max_rss.is_some() => {
                let rss = rss_of(&mut sys, pid);
                let limit = cfg.max_rss.unwrap_or(u64::MAX);
                if rss > limit {
                    shared.emit(EventKind::LimitExceeded, |e| {
                        e.pid = Some(pid);
                        e.rss_bytes = Some(rss);
                        e.reason = Some(format!("resident memory {rss} > limit {limit} bytes"));
                    });
                    signal_group_kill(pid);
                    let _ = child.wait().await;
                    break End::Killed { reason: "memory limit".into(), memory: Some(rss) };
                }
            }
            _ = shared.stop.cancelled() => {
                stop_child(shared, child, session).await;
                break End::Stop;
            }
        }
    };
    health.abort();
    end
}
