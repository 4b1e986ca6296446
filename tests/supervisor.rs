//! `quarry-supervisor` against real processes: one test per fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use quarry_supervisor::{CallError, CallOptions, Config, Event, EventKind, State, Supervisor};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_quarry");

fn config(extra: &[&str]) -> (Config, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["serve", "--debug-methods"];
    args.extend_from_slice(extra);
    let mut c = Config::new(BIN, args);
    c.child
        .env
        .push(("QUARRY_DATA_DIR".into(), data.path().as_os_str().to_owned()));
    c.health_interval = Duration::from_millis(200);
    c.health_timeout = Duration::from_millis(200);
    c.restart.initial = Duration::from_millis(50);
    c.start_timeout = Duration::from_secs(20);
    (c, data)
}

fn sh(script: &str) -> Config {
    let mut c = Config::new("sh", ["-c", script]);
    c.restart.initial = Duration::from_millis(10);
    c.start_timeout = Duration::from_secs(20);
    c
}

const READY: &str = r#"{"jsonrpc":"2.0","method":"sidecar/ready","params":{"protocolVersion":1}}"#;

fn opts() -> CallOptions {
    CallOptions {
        timeout: Some(Duration::from_secs(30)),
        ..CallOptions::default()
    }
}

async fn call(sup: &Supervisor, method: &str, params: Value) -> Result<Value, CallError> {
    sup.call(method, params, opts()).await
}

async fn pid_of(sup: &Supervisor) -> u32 {
    sup.wait_ready(Duration::from_secs(20)).await.unwrap();
    sup.status().pid.unwrap()
}

fn kill(pid: u32, sig: rustix::process::Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
        .unwrap();
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: check the state in /proc.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_event(rx: &mut tokio::sync::broadcast::Receiver<Event>, kind: EventKind) -> Event {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Ok(e) if e.event == kind => return e,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind:?} event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_fails_it_at_once_and_the_next_call_succeeds() {
    let (c, _d) = config(&[]);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let pid = pid_of(&sup).await;
    let s2 = sup.clone();
    let in_flight =
        tokio::spawn(async move { call(&s2, "debug/sleep", json!({"ms": 10_000})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    kill(pid, rustix::process::Signal::KILL);
    let err = in_flight.await.unwrap().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    match err {
        CallError::SidecarExited { signal, .. } => assert_eq!(signal, Some(9)),
        e => panic!("{e:?}"),
    }
    let exited = wait_event(&mut ev, EventKind::Exited).await;
    assert_eq!(exited.signal, Some(9));
    let r = wait_event(&mut ev, EventKind::Restarting).await;
    assert_eq!(r.attempt, Some(1));
    assert_eq!(r.delay_ms, Some(0), "first restart is immediate");
    let v = call(&sup, "debug/echo", json!({"after": 1})).await.unwrap();
    assert_eq!(v, json!({"after": 1}));
    assert_ne!(sup.status().pid, Some(pid));
    assert_eq!(sup.status().restarts, 1);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_is_reported() {
    let (c, _d) = config(&[]);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    pid_of(&sup).await;
    let err = call(&sup, "debug/exit", json!({"code": 3}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::SidecarExited {
                exit_code: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let e = wait_event(&mut ev, EventKind::Exited).await;
    assert_eq!(e.exit_code, Some(3));
    assert_eq!(sup.status().last_exit.unwrap().exit_code, Some(3));
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    sup.shutdown().await;
}

async fn hang_is_detected(stop_it: impl FnOnce(&Supervisor, u32)) {
    let (c, _d) = config(&[]);
    let (interval, timeout, misses) = (c.health_interval, c.health_timeout, c.health_failures);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let pid = pid_of(&sup).await;
    let s2 = sup.clone();
    let in_flight =
        tokio::spawn(async move { call(&s2, "debug/sleep", json!({"ms": 60_000})).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    stop_it(&sup, pid);
    wait_event(&mut ev, EventKind::Unhealthy).await;
    let exited = wait_event(&mut ev, EventKind::Exited).await;
    let detected = t.elapsed();
    assert!(exited.reason.unwrap().contains("hung"));
    // interval × misses + deadline + slack for a loaded machine.
    let bound = interval * misses + timeout + Duration::from_secs(2);
    assert!(detected < bound, "detected after {detected:?}");
    assert!(matches!(
        in_flight.await.unwrap(),
        Err(CallError::SidecarExited { ref reason, .. }) if reason.contains("hung")
    ));
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    assert!(!alive(pid));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_hang_is_detected_and_restarted() {
    hang_is_detected(|_, pid| kill(pid, rustix::process::Signal::STOP)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_hang_is_detected_and_restarted() {
    hang_is_detected(|sup, _| {
        let sup = sup.clone();
        tokio::spawn(async move {
            let _ = sup
                .call::<_, Value>("debug/hang", json!({}), CallOptions::default())
                .await;
        });
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_restarts_and_fails_calls_in_flight() {
    let (mut c, _d) = config(&[]);
    c.max_rss = Some(150 * 1024 * 1024);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let pid = pid_of(&sup).await;
    let s2 = sup.clone();
    let in_flight =
        tokio::spawn(async move { call(&s2, "debug/sleep", json!({"ms": 60_000})).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = call(&sup, "debug/alloc", json!({"mb": 300})).await;
    let e = wait_event(&mut ev, EventKind::LimitExceeded).await;
    assert!(e.rss_bytes.unwrap() > 150 * 1024 * 1024);
    assert_eq!(e.pid, Some(pid));
    assert!(matches!(
        in_flight.await.unwrap(),
        Err(CallError::MemoryLimit { .. })
    ));
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_gives_up_and_calls_are_unavailable() {
    let mut c = sh(&format!("echo '{READY}'; sleep 0.05; exit 1"));
    c.restart.max_restarts = 3;
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let mut restarting = Vec::new();
    let gave_up = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = ev.recv().await.unwrap();
            match e.event {
                EventKind::Restarting => restarting.push(e.delay_ms.unwrap()),
                EventKind::GaveUp => return e,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(restarting, [0, 10, 20], "immediate, then doubling");
    assert!(gave_up.reason.unwrap().contains("intensity"));
    assert_eq!(sup.status().state, State::GaveUp);
    assert!(matches!(
        call(&sup, "ping", json!({})).await,
        Err(CallError::Unavailable(_))
    ));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_starts_give_up() {
    let mut c = sh("sleep 60");
    c.start_timeout = Duration::from_millis(200);
    c.restart.max_unready_starts = Some(3);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let e = wait_event(&mut ev, EventKind::GaveUp).await;
    assert!(e.reason.unwrap().contains("never became ready"));
    let hist = sup.history();
    let timeouts = hist
        .iter()
        .filter(|e| {
            e.event == EventKind::Exited
                && e.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("start timeout"))
        })
        .count();
    assert_eq!(timeouts, 3);
    sup.shutdown().await;

    // A binary that does not exist: every start fails to spawn (no exit code, and no
    // signal either: nothing was killed), and the restart budget gives up.
    let mut c = Config::new("/nonexistent/quarry", ["serve"]);
    c.restart.initial = Duration::from_millis(1);
    c.restart.max_restarts = 2;
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let e = wait_event(&mut ev, EventKind::GaveUp).await;
    assert!(e.reason.unwrap().contains("intensity"));
    let exits: Vec<Event> = sup
        .history()
        .into_iter()
        .filter(|e| e.event == EventKind::Exited)
        .collect();
    assert_eq!(exits.len(), 3, "{exits:?}");
    for e in &exits {
        assert_eq!((e.exit_code, e.signal), (None, None), "{e:?}");
        assert!(
            e.reason.as_deref().unwrap().contains("spawn failed"),
            "{e:?}"
        );
    }
    let last = sup.status().last_exit.unwrap();
    assert_eq!((last.exit_code, last.signal), (None, None));
    assert!(matches!(
        call(&sup, "ping", json!({})).await,
        Err(CallError::Unavailable(_))
    ));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_garbage_is_counted_not_fatal() {
    let c = sh(&format!(
        "echo 'not json'; echo '{{\"half\":'; exec {BIN} serve"
    ));
    let sup = Supervisor::spawn(c).unwrap();
    sup.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    assert_eq!(sup.status().garbage_lines, 2);
    assert_eq!(sup.status().restarts, 0);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mib_stderr_flood_is_drained() {
    let c = sh(&format!(
        "yes 'stderr flood line' | head -c 10485760 >&2; echo 'last words' >&2; exec {BIN} serve"
    ));
    let sup = Supervisor::spawn(c).unwrap();
    sup.wait_ready(Duration::from_secs(30)).await.unwrap();
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_errors_carry_the_stderr_tail() {
    let c = sh(&format!(
        "echo '{READY}'; echo 'panic: something broke' >&2; sleep 0.3; exit 7"
    ));
    let sup = Supervisor::spawn(c).unwrap();
    sup.wait_ready(Duration::from_secs(20)).await.unwrap();
    let err = sup
        .call::<_, Value>("anything", json!({}), opts())
        .await
        .unwrap_err();
    match err {
        CallError::SidecarExited {
            exit_code,
            stderr_tail,
            ..
        } => {
            assert_eq!(exit_code, Some(7));
            assert!(
                stderr_tail.iter().any(|l| l.contains("something broke")),
                "{stderr_tail:?}"
            );
        }
        e => panic!("{e:?}"),
    }
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ignored_escalates_to_sigkill_and_leaves_nothing() {
    let mut c = sh(&format!(
        "trap '' TERM; echo '{READY}'; sleep 300 & wait; sleep 300"
    ));
    c.stop_timeout = Duration::from_millis(300);
    c.term_timeout = Duration::from_millis(300);
    c.health_interval = Duration::from_secs(60);
    let sup = Supervisor::spawn(c).unwrap();
    let pid = pid_of(&sup).await;
    let t = Instant::now();
    sup.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!alive(pid));
    // The whole group is gone: no `sleep 300` left behind.
    let leftovers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.split(") ")
                        .nth(1)
                        .map(|r| r.split(' ').nth(3).map(str::to_owned))
                })
                .flatten()
                .is_some_and(|pgid| pgid == pid.to_string())
                && alive(*p)
        })
        .count();
    assert_eq!(leftovers, 0);
    assert_eq!(sup.status().state, State::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_are_replayed_on_the_next_child() {
    let (c, _d) = config(&[]);
    let sup = Supervisor::spawn(c).unwrap();
    let pid = pid_of(&sup).await;
    let s2 = sup.clone();
    let replayed = tokio::spawn(async move {
        s2.call::<_, Value>(
            "debug/sleep",
            json!({"ms": 800}),
            CallOptions {
                idempotent: true,
                ..opts()
            },
        )
        .await
    });
    let s3 = sup.clone();
    let plain = tokio::spawn(async move { call(&s3, "debug/sleep", json!({"ms": 800})).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(pid, rustix::process::Signal::KILL);
    assert_eq!(replayed.await.unwrap().unwrap(), json!({"slept": 800}));
    assert!(matches!(
        plain.await.unwrap(),
        Err(CallError::SidecarExited { .. })
    ));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_idempotent_call_cannot_crash_loop_the_sidecar() {
    let (mut c, _d) = config(&[]);
    c.replay_budget = 2;
    let sup = Supervisor::spawn(c).unwrap();
    pid_of(&sup).await;
    let err = sup
        .call::<_, Value>(
            "debug/exit",
            json!({"code": 9}),
            CallOptions {
                idempotent: true,
                ..opts()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CallError::SidecarExited {
            exit_code: Some(9),
            ..
        }
    ));
    // The next call waits for the fourth child: three restarts, no more.
    assert!(call(&sup, "ping", json!({})).await.is_ok());
    assert_eq!(sup.status().restarts, 3, "first try + 2 replays");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_while_down_wait_for_the_next_child() {
    let (mut c, _d) = config(&[]);
    c.restart.initial = Duration::from_millis(300);
    let sup = Supervisor::spawn(c).unwrap();
    let pid = pid_of(&sup).await;
    // Two quick crashes: the second restart waits 300 ms.
    let _ = call(&sup, "debug/exit", json!({"code": 1})).await;
    sup.wait_ready(Duration::from_secs(20)).await.unwrap();
    let _ = call(&sup, "debug/exit", json!({"code": 1})).await;
    assert_ne!(sup.status().state, State::Ready);
    let done = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for i in 0..20 {
        let s = sup.clone();
        let done = done.clone();
        calls.push(tokio::spawn(async move {
            let v = call(&s, "debug/echo", json!({"i": i})).await.unwrap();
            done.fetch_add(1, Ordering::Relaxed);
            v
        }));
    }
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap(), json!({"i": i}));
    }
    assert_eq!(done.load(Ordering::Relaxed), 20);
    assert_ne!(sup.status().pid, Some(pid));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_drains_in_flight_calls() {
    let (c, _d) = config(&[]);
    let sup = Supervisor::spawn(c).unwrap();
    let mut ev = sup.events();
    let pid = pid_of(&sup).await;
    let s2 = sup.clone();
    let in_flight = tokio::spawn(async move { call(&s2, "debug/sleep", json!({"ms": 300})).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    sup.shutdown().await;
    assert_eq!(in_flight.await.unwrap().unwrap(), json!({"slept": 300}));
    wait_event(&mut ev, EventKind::Stopped).await;
    assert!(!alive(pid));
    assert!(matches!(
        call(&sup, "ping", json!({})).await,
        Err(CallError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_timeouts_and_cancellation_by_drop() {
    let (c, _d) = config(&[]);
    let sup = Supervisor::spawn(c).unwrap();
    pid_of(&sup).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let v: Value = sup
        .call(
            "debug/sleep",
            json!({"ms": 55}),
            CallOptions {
                on_progress: Some(Arc::new(move |p| s.lock().unwrap().push(p.progress))),
                ..opts()
            },
        )
        .await
        .unwrap();
    assert_eq!(v, json!({"slept": 55}));
    assert_eq!(*seen.lock().unwrap(), [10.0, 20.0, 30.0, 40.0, 50.0]);
    let err = sup
        .call::<_, Value>(
            "debug/sleep",
            json!({"ms": 5000}),
            CallOptions {
                timeout: Some(Duration::from_millis(100)),
                ..CallOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Timeout(_) | CallError::Server { code: -32001, .. }
        ),
        "{err:?}"
    );
    // Dropping a call cancels it in the child: with one slot, the next call runs at once.
    let (c1, _d1) = config(&["--max-concurrency", "1"]);
    let sup1 = Supervisor::spawn(c1).unwrap();
    pid_of(&sup1).await;
    let fut = sup1.call::<_, Value>("debug/sleep", json!({"ms": 60_000}), opts());
    let _ = tokio::time::timeout(Duration::from_millis(200), fut).await;
    let t = Instant::now();
    assert!(call(&sup1, "debug/echo", json!({})).await.is_ok());
    assert!(t.elapsed() < Duration::from_secs(5));
    let err = call(&sup, "no/such", json!({})).await.unwrap_err();
    assert!(
        matches!(err, CallError::Server { code: -32601, ref kind, .. } if kind.as_deref() == Some("method_not_found"))
    );
    sup.shutdown().await;
    sup1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_busy_streaming_progress_is_not_hung() {
    // Never answers `health`, but writes a message every 20 ms: busy, not hung.
    let script = format!(
        "echo '{READY}'; while true; do echo '{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":0,\"progress\":1}}}}'; sleep 0.02; done"
    );
    let mut c = sh(&script);
    c.health_interval = Duration::from_millis(100);
    c.health_timeout = Duration::from_millis(100);
    c.health_failures = 2;
    let sup = Supervisor::spawn(c).unwrap();
    sup.wait_ready(Duration::from_secs(20)).await.unwrap();
    let pid = sup.status().pid.unwrap();
    // Ten times the hang-detection time (interval × failures + timeout = 300 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = sup.status();
    assert_eq!(
        (st.state, st.pid, st.restarts),
        (State::Ready, Some(pid), 0)
    );
    assert!(
        !sup.history()
            .iter()
            .any(|e| e.event == EventKind::Unhealthy),
        "{:?}",
        sup.history()
    );
    sup.shutdown().await;
}
