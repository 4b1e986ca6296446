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
    // One name everywhere (events, errors, status): exitCode, signal, reason.
    let last = &result_of(&st)["lastExit"];
    assert_eq!(last["exitCode"], 3, "{last}");
    assert_eq!(last["reason"], "exited", "{last}");
    assert!(last.get("code").is_none(), "{last}");
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

#[test]
fn requests_after_shutdown_are_answered_shutting_down_before_the_exit() {
    let mut s = supervised(&[]);
    let pid = child_pid(&mut s, "st");
    // One write: the proxy reads `shutdown` and the requests behind it together.
    let lines = [
        json!({"jsonrpc": "2.0", "id": "bye", "method": "shutdown"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "debug/echo", "params": {"late": 1}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    s.send_bytes(text.as_bytes());
    assert_error(&s.response(1), -32003, "shutting_down");
    assert_error(&s.response(2), -32003, "shutting_down");
    assert_eq!(result_of(&s.response("bye")), &json!({}));
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(!alive(pid));
}

#[test]
fn max_restarts_governs_starts_that_never_become_ready() {
    // A child that exits before `sidecar/ready`: --max-restarts 3 means 3 restarts
    // (4 starts), not a hidden never-ready budget of its own.
    let mut cmd = Command::new(bin());
    cmd.args([
        "supervise",
        "--max-restarts",
        "3",
        "--backoff-initial-ms",
        "10",
        "--backoff-max-ms",
        "20",
        "--",
        "sh",
        "-c",
        "exit 7",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut started = 0;
    let mut exited_codes = Vec::new();
    let mut gave_up = None;
    for line in std::io::BufRead::lines(stdout) {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_eq!(v["method"], "supervisor/event", "{v}");
        match v["params"]["event"].as_str().unwrap() {
            "started" => started += 1,
            "exited" => exited_codes.push(v["params"]["exitCode"].clone()),
            "gave_up" => {
                gave_up = Some(v["params"].clone());
                break;
            }
            _ => {}
        }
    }
    let gave_up = gave_up.expect("gave_up");
    assert_eq!(started, 4, "1 start + 3 restarts");
    assert_eq!(exited_codes, vec![json!(7); 4]);
    assert!(
        gave_up["reason"].as_str().unwrap().contains("intensity"),
        "{gave_up}"
    );
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn the_memory_limit_and_rlimits_are_applied_and_reported() {
    let mut s = supervised(&["--max-rss-mb", "150"]);
    let pid = child_pid(&mut s, "st");
    // RLIMIT_NOFILE set at spawn (1,024 open files, soft and hard).
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = nofile.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["1024", "1024"], "{nofile}");
    // Over the RSS limit: the call fails typed, with the figures, and a new child serves.
    let v = s.request(1, "debug/alloc", json!({"mb": 400}));
    assert_error(&v, -32004, "sidecar_exited");
    let data = &v["error"]["data"];
    assert_eq!(data["reason"], "memory_limit", "{v}");
    assert_eq!(data["limitBytes"], 150 * 1024 * 1024, "{v}");
    assert!(
        data["rssBytes"].as_u64().unwrap() > 150 * 1024 * 1024,
        "{v}"
    );
    wait_note(&mut s, "supervisor/event", |p| {
        p["event"] == "limit_exceeded"
    });
    wait_note(&mut s, "sidecar/ready", |_| true);
    assert_ne!(child_pid(&mut s, "st2"), pid);
}

#[test]
fn crash_errors_carry_the_stderr_tail_and_garbage_is_counted() {
    // A child that writes a non-JSON line on stdout before it serves.
    let mut cmd = Command::new(bin());
    // Few log lines, so that the child's own words stay in the 64-line tail.
    cmd.env("RUST_LOG", "warn")
        .args(["supervise", "--"])
        .args(["sh", "-c"])
        .arg(format!(
            "echo 'this is not json'; echo 'a last word on stderr' >&2; exec {} serve --debug-methods",
            bin()
        ));
    let mut s = Sidecar::spawn_cmd(cmd);
    let st = s.request("st", "supervisor/status", Value::Null);
    assert_eq!(result_of(&st)["garbageLines"], 1, "{st}");
    let v = s.request(1, "debug/exit", json!({"code": 5}));
    assert_error(&v, -32004, "sidecar_exited");
    let tail = v["error"]["data"]["stderrTail"].as_array().unwrap();
    assert!(
        tail.iter().any(|l| l == "a last word on stderr"),
        "{tail:?}"
    );
}
