//! PROTOCOL.md §7: ready, shutdown, end of input, signals, health, stats, debug aids,
//! configuration by environment, and a host that never drains stderr.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rustix::process::Signal;
use serde_json::{Value, json};

#[test]
fn shutdown_drains_then_answers_then_exits_zero() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/sleep", json!({"ms": 300}));
    s.call(2, "debug/sleep", json!({"ms": 100}));
    s.call("bye", "shutdown", Value::Null);
    s.call(3, "debug/echo", json!({}));
    let v = s.recv();
    assert_eq!(v["id"], 3);
    assert_error(&v, -32003, "shutting_down");
    // Control methods still answer while draining.
    let h = s.request("h", "health", Value::Null);
    assert_eq!(result_of(&h)["status"], "degraded");
    let rest = s.drain();
    let ids: Vec<&Value> = rest.iter().map(|v| &v["id"]).collect();
    assert_eq!(ids, [&json!(2), &json!(1), &json!("bye")], "{rest:?}");
    assert_eq!(rest[0]["result"], json!({"slept": 100}));
    assert_eq!(rest[1]["result"], json!({"slept": 300}));
    assert_eq!(rest[2]["result"], json!({}));
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[test]
fn work_past_the_grace_period_is_answered_shutting_down() {
    let mut s = Sidecar::spawn(&["--shutdown-grace-ms", "200", "--max-concurrency", "1"]);
    s.call(1, "debug/sleep", json!({"ms": 60_000}));
    s.call(2, "debug/sleep", json!({"ms": 60_000}));
    let started = Instant::now();
    s.call("bye", "shutdown", Value::Null);
    let rest = s.drain();
    assert_eq!(rest.len(), 3, "{rest:?}");
    for v in &rest[..2] {
        assert_error(v, -32003, "shutting_down");
    }
    assert_eq!(rest[2]["id"], "bye");
    assert_eq!(rest[2]["result"], json!({}));
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn end_of_input_drains_and_exits_zero() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/sleep", json!({"ms": 200}));
    s.call(2, "debug/echo", json!({"x": 1}));
    s.close_stdin();
    let rest = s.drain();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(rest.iter().any(|v| v["result"] == json!({"slept": 200})));
    assert!(rest.iter().any(|v| v["result"] == json!({"x": 1})));
    assert_eq!(s.wait_exit().code(), Some(0));
}

fn signal_drains(sig: Signal) {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/sleep", json!({"ms": 300}));
    // Make sure the request was read before the signal.
    assert!(s.request("p", "ping", Value::Null).get("result").is_some());
    s.signal(sig);
    std::thread::sleep(Duration::from_millis(50));
    s.call(2, "debug/echo", json!({}));
    let v = s.response(2);
    assert_error(&v, -32003, "shutting_down");
    let v = s.response(1);
    assert_eq!(result_of(&v), &json!({"slept": 300}));
    assert!(s.drain().is_empty());
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    signal_drains(Signal::TERM);
}

#[test]
fn sigint_drains_and_exits_zero() {
    signal_drains(Signal::INT);
}

#[test]
fn health_and_stats_report_the_serving_process() {
    let mut s = Sidecar::spawn(&[]);
    let h = s.request(1, "health", Value::Null);
    let h = result_of(&h);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["inFlight"], 0);
    assert_eq!(h["queued"], 0);
    assert!(h["uptimeMs"].is_u64());
    let rss = h["rssBytes"].as_u64().unwrap();
    assert!(rss > 1 << 20, "rss {rss}");
    for i in 0..20 {
        s.request(100 + i, "debug/echo", json!({"i": i}));
    }
    s.send_line("nope");
    s.recv();
    let st = s.request(2, "stats", Value::Null);
    let st = result_of(&st);
    assert_eq!(st["methods"]["debug/echo"]["count"], 20);
    assert_eq!(st["methods"]["debug/echo"]["ok"], 20);
    assert_eq!(st["methods"]["health"]["count"], 1);
    let lat = &st["methods"]["debug/echo"]["latencyUs"];
    assert!(lat["p50"].as_u64().unwrap() <= lat["p99"].as_u64().unwrap());
    assert!(lat["p99"].as_u64().unwrap() <= lat["max"].as_u64().unwrap());
    assert_eq!(st["messages"]["parseErrors"], 1);
    assert_eq!(st["queue"]["maxConcurrency"], 64);
    assert_eq!(st["queue"]["maxQueue"], 1024);
    assert!(st["rssBytes"].as_u64().unwrap() > 0);
}

#[test]
fn debug_methods_are_unknown_without_the_flag() {
    let mut cmd = Command::new(bin());
    cmd.arg("serve");
    let mut s = Sidecar::spawn_cmd(cmd);
    let methods = s.ready["methods"].as_array().unwrap().clone();
    assert!(
        !methods
            .iter()
            .any(|m| m.as_str().unwrap().starts_with("debug/")),
        "{methods:?}"
    );
    for m in [
        "debug/sleep",
        "debug/echo",
        "debug/panic",
        "debug/exit",
        "debug/hang",
        "debug/alloc",
    ] {
        assert_error(
            &s.request(m, m, json!({"ms": 1, "code": 1, "mb": 1})),
            -32601,
            "method_not_found",
        );
    }
}

#[test]
fn debug_exit_exits_with_the_code() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/exit", json!({"code": 3}));
    assert_eq!(s.wait_exit().code(), Some(3));
}

#[test]
fn debug_hang_stops_answering_everything() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/hang", Value::Null);
    std::thread::sleep(Duration::from_millis(100));
    s.call(2, "health", Value::Null);
    s.call(3, "ping", Value::Null);
    s.expect_silence(Duration::from_millis(1500));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "still alive, just hung"
    );
}

#[test]
fn debug_alloc_grows_resident_memory() {
    let mut s = Sidecar::spawn(&[]);
    let before = result_of(&s.request(1, "health", Value::Null))["rssBytes"]
        .as_u64()
        .unwrap();
    let v = s.request(2, "debug/alloc", json!({"mb": 64}));
    assert_eq!(result_of(&v)["heldMb"], 64);
    let after = result_of(&s.request(3, "health", Value::Null))["rssBytes"]
        .as_u64()
        .unwrap();
    assert!(after >= before + 60 * (1 << 20), "rss {before} -> {after}");
}

#[test]
fn flags_are_settable_by_environment() {
    let mut cmd = Command::new(bin());
    cmd.args(["serve"])
        .env("QUARRY_DEBUG_METHODS", "true")
        .env("QUARRY_MAX_CONCURRENCY", "1")
        .env("QUARRY_MAX_QUEUE", "1")
        .env("QUARRY_LOG_FORMAT", "json");
    let mut s = Sidecar::spawn_cmd(cmd);
    s.call(1, "debug/sleep", json!({"ms": 300}));
    s.call(2, "debug/sleep", json!({"ms": 1}));
    s.call(3, "debug/sleep", json!({"ms": 1}));
    let v = s.recv();
    assert_eq!(v["id"], 3);
    assert_error(&v, -32002, "overloaded");
    let help = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for env in [
        "QUARRY_MAX_CONCURRENCY",
        "QUARRY_MAX_QUEUE",
        "QUARRY_MAX_MESSAGE_BYTES",
        "QUARRY_SHUTDOWN_GRACE_MS",
        "QUARRY_DEBUG_METHODS",
        "QUARRY_LOG_FORMAT",
    ] {
        assert!(help.contains(env), "{env} missing from --help");
    }
}

#[test]
fn a_host_that_never_reads_stderr_cannot_wedge_the_server() {
    let mut child = Command::new(bin())
        .args(["serve", "--debug-methods", "--max-queue", "100000"])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()) // never read
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let n = 3000;
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            // Each panic logs an error line with the message; unknown notifications
            // log at debug: far more than a pipe buffer of stderr.
            writeln!(
                stdin,
                r#"{{"jsonrpc":"2.0","id":{i},"method":"debug/panic"}}"#
            )
            .unwrap();
            writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"unknown/{i}"}}"#).unwrap();
        }
        stdin
    });
    let mut r = BufReader::new(stdout);
    let mut line = String::new();
    r.read_line(&mut line).unwrap(); // ready
    let mut answered = 0;
    while answered < n {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "stdout closed after {answered}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_error(&v, -32603, "internal");
        answered += 1;
    }
    drop(writer.join().unwrap());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn notifications_to_methods_run_and_are_counted_and_dropped_when_full() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1", "--max-queue", "1"]);
    // Executed: `debug/alloc` sent as a notification holds its memory like a request.
    s.notify("debug/alloc", json!({"mb": 3}));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = s.request("a", "debug/alloc", json!({"mb": 0}));
        if result_of(&v)["heldMb"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the notification never ran: {v}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = s.request("s", "stats", Value::Null);
    assert_eq!(result_of(&st)["messages"]["notifications"], 1, "{st}");
    // One running, one queued: a third notification finds the queue full and is dropped.
    s.call(1, "debug/sleep", json!({"ms": 60_000}));
    s.call(2, "debug/sleep", json!({"ms": 60_000}));
    loop {
        let st = s.request("q", "stats", Value::Null);
        let q = &result_of(&st)["queue"];
        if q["running"] == 1 && q["queued"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    s.notify("debug/echo", json!({"x": 2}));
    let st = s.request("s2", "stats", Value::Null);
    let st = result_of(&st);
    assert_eq!(st["queue"]["overloaded"], 1, "{st}");
    assert_eq!(st["messages"]["notifications"], 2, "{st}");
    s.cancel(1);
    s.cancel(2);
    assert_error(&s.response(1), -32800, "cancelled");
    assert_error(&s.response(2), -32800, "cancelled");
}

#[test]
fn shutdown_as_a_notification_drains_and_exits() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/sleep", json!({"ms": 100}));
    s.send_line(r#"{"jsonrpc":"2.0","method":"shutdown"}"#);
    assert_eq!(result_of(&s.response(1)), &json!({"slept": 100}));
    assert_eq!(s.wait_exit().code(), Some(0));
}
