//! `quarry supervise -- quarry serve` (PROTOCOL.md §10) over real pipes.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn supervised(opts: &[&str]) -> Sidecar {
    let mut cmd = Command::new(bin());
    cmd.arg("supervise")
        .args([
            "--health-interval-ms",
            "200",
            "--health-timeout-ms",
            "300",
            "--backoff-initial-ms",
            "20",
        ])
        .args(opts)
        .arg("--")
        .arg(bin())
        .args(["serve", "--debug-methods"]);
    Sidecar::spawn_cmd(cmd)
}

fn alive(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
        Err(_) => false,
    }
}

fn child_pid(s: &mut Sidecar, id: &str) -> u64 {
    let v = s.request(id, "supervisor/status", Value::Null);
    let st = result_of(&v);
    assert_eq!(st["state"], "ready", "{st}");
    st["pid"].as_u64().unwrap()
}

/// Waits for a notification with `method` (and matching `pred`), skipping others.
fn wait_note(s: &mut Sidecar, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no {method}");
        let v = s.recv();
        if v["method"] == method && pred(&v["params"]) {
            return v;
        }
    }
}

#[test]
fn requests_progress_batches_and_status_pass_through() {
    let mut s = supervised(&[]);
    assert_eq!(
        s.ready["protocolVersion"], 1,
        "the child's ready is passed on"
    );
    assert_eq!(result_of(&s.request(1, "ping", Value::Null)), &json!({}));
    assert_eq!(
        result_of(&s.request("e", "debug/echo", json!({"n": 18446744073709551615u64}))),
        &json!({"n": 18446744073709551615u64})
    );
    s.call(
        2,
        "debug/sleep",
        json!({"ms": 35, "_meta": {"progressToken": "tok"}}),
    );
    let mut progress = Vec::new();
    let done = loop {
        let v = s.recv();
        if v["method"] == "notifications/progress" {
            assert_eq!(v["params"]["progressToken"], "tok");
            progress.push(v["params"]["progress"].as_f64().unwrap());
        } else if v.get("id") == Some(&json!(2)) {
            break v;
        }
    };
    assert_eq!(result_of(&done), &json!({"slept": 35}));
    assert_eq!(progress, [10.0, 20.0, 30.0]);
    s.send_line(r#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"b","method":"debug/echo","params":{"x":1}}]"#);
    let batch = loop {
        let v = s.recv();
        if v.is_array() {
            break v;
        }
    };
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert_error(
        &s.request(3, "no/such", Value::Null),
        -32601,
        "method_not_found",
    );
    let v = s.request(
        4,
        "debug/sleep",
        json!({"ms": 5000, "_meta": {"timeoutMs": 100}}),
    );
    assert_error(&v, -32001, "timeout");
    s.call(5, "debug/sleep", json!({"ms": 60_000}));
    std::thread::sleep(Duration::from_millis(100));
    s.cancel(5);
    assert_error(&s.response(5), -32800, "cancelled");
    let pid = child_pid(&mut s, "st");
    assert!(alive(pid));
}

#[test]
fn a_crash_answers_sidecar_exited_and_the_next_child_serves() {
    let mut s = supervised(&[]);
    let first = child_pid(&mut s, "st1");
    s.call(1, "debug/sleep", json!({"ms": 60_000}));
    std::thread::sleep(Duration::from_millis(100));
    let v = s.request(2, "debug/exit", json!({"code": 3}));
    assert_error(&v, -32004, "sidecar_exited");
    assert_eq!(v["error"]["data"]["exitCode"], 3);
    let v = s.response(1);
    assert_error(&v, -32004, "sidecar_exited");
    wait_note(&mut s, "supervisor/event", |p| {
        p["event"] == "exited" && p["exitCode"] == 3
    });
    wait_note(&mut s, "supervisor/event", |p| p["event"] == "restarting");
    wait_note(&mut s, "sidecar/ready", |_| true);
    assert_eq!(
        result_of(&s.request(3, "debug/echo", json!({"ok": 1}))),
        &json!({"ok": 1})
    );
    let second = child_pid(&mut s, "st2");
    assert_ne!(first, second);
    assert!(!alive(first));
    let st = s.request("st3", "supervisor/status", Value::Null);
    assert_eq!(result_of(&st)["restarts"], 1);
    assert_eq!(result_of(&st)["lastExit"]["code"], 3);
}

#[test]
fn idempotent_requests_are_replayed_after_a_crash() {
    let mut s = supervised(&[]);
    let pid = child_pid(&mut s, "st");
    s.call(
        1,
        "debug/sleep",
        json!({"ms": 700, "_meta": {"idempotent": true}}),
    );
    s.call(2, "debug/sleep", json!({"ms": 700}));
    std::thread::sleep(Duration::from_millis(200));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    assert_error(&s.response(2), -32004, "sidecar_exited");
    assert_eq!(result_of(&s.response(1)), &json!({"slept": 700}));
}

#[test]
fn giving_up_answers_sidecar_unavailable() {
    let mut cmd = Command::new(bin());
    cmd.args(["supervise", "--max-restarts", "1", "--backoff-initial-ms", "10", "--"])
        .args(["sh", "-c", r#"echo '{"jsonrpc":"2.0","method":"sidecar/ready","params":{"protocolVersion":1}}'; sleep 0.2; exit 1"#]);
    let mut s = Sidecar::spawn_cmd(cmd);
    wait_note(&mut s, "supervisor/event", |p| p["event"] == "gave_up");
    let v = s.request(1, "ping", Value::Null);
    assert_error(&v, -32005, "sidecar_unavailable");
    assert_eq!(
        result_of(&s.request(2, "supervisor/status", Value::Null))["state"],
        "gave_up"
    );
}

#[test]
fn closing_stdin_stops_the_proxy_and_the_child() {
    let mut s = supervised(&[]);
    let pid = child_pid(&mut s, "st");
    s.call(1, "debug/sleep", json!({"ms": 200}));
    s.close_stdin();
    assert_eq!(
        result_of(&s.response(1)),
        &json!({"slept": 200}),
        "drained on the way out"
    );
    assert_eq!(s.wait_exit().code(), Some(0));
    let t = Instant::now();
    while alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid));
}

#[test]
fn a_sigkilled_host_leaves_no_process() {
    let mut s = supervised(&[]);
    let pid = child_pid(&mut s, "st");
    s.signal(rustix::process::Signal::KILL);
    s.wait_exit();
    let t = Instant::now();
    while alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the sidecar outlived its supervisor");
}

#[test]
fn shutdown_request_drains_and_exits() {
    let mut s = supervised(&[]);
    let pid = child_pid(&mut s, "st");
    s.call(1, "debug/sleep", json!({"ms": 200}));
    s.call("bye", "shutdown", Value::Null);
    assert_eq!(result_of(&s.response(1)), &json!({"slept": 200}));
    assert_eq!(result_of(&s.response("bye")), &json!({}));
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(!alive(pid));
}
