//! PROTOCOL.md §3–6: `_meta`, priority queue, overload, deadlines, cancellation,
//! progress, panics.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn meta_is_removed_before_the_method_sees_params() {
    let mut s = Sidecar::spawn(&[]);
    let v = s.request(
        1,
        "debug/echo",
        json!({"a": 1, "_meta": {"priority": "low", "unknownKey": true, "timeoutMs": 5000}, "b": {"_meta": "kept"}}),
    );
    assert_eq!(result_of(&v), &json!({"a": 1, "b": {"_meta": "kept"}}));
    // A huge integer inside params survives the `_meta` removal untouched.
    s.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"debug/echo","params":{"n":18446744073709551617,"_meta":{}}}"#);
    let raw = String::from_utf8(s.recv_raw_timeout(WAIT).unwrap()).unwrap();
    assert!(raw.contains(r#""n":18446744073709551617"#), "{raw}");
}

#[test]
fn queue_runs_by_priority_then_arrival() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    s.call("block", "debug/sleep", json!({"ms": 300}));
    for (id, prio) in [
        ("l1", "low"),
        ("n1", "normal"),
        ("h1", "high"),
        ("l2", "low"),
        ("d1", ""),
        ("h2", "high"),
        ("n2", "normal"),
    ] {
        let params = if prio.is_empty() {
            json!({})
        } else {
            json!({"_meta": {"priority": prio}})
        };
        s.call(id, "debug/echo", params);
    }
    let order: Vec<String> = (0..8)
        .map(|_| s.recv()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["block", "h1", "h2", "n1", "d1", "n2", "l1", "l2"]);
}

#[test]
fn full_queue_is_refused_at_once_and_nothing_is_dropped() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1", "--max-queue", "2"]);
    s.call(1, "debug/sleep", json!({"ms": 400}));
    s.call(2, "debug/sleep", json!({"ms": 1}));
    s.call(3, "debug/sleep", json!({"ms": 1}));
    s.call(4, "debug/sleep", json!({"ms": 1}));
    let v = s.recv();
    assert_eq!(v["id"], 4);
    assert_error(&v, -32002, "overloaded");
    assert_eq!(v["error"]["data"]["queueLimit"], 2);
    let h = s.request("h", "health", Value::Null);
    assert_eq!(result_of(&h)["queued"], 2);
    assert_eq!(result_of(&h)["inFlight"], 1);
    assert_eq!(result_of(&h)["status"], "degraded");
    for id in [1, 2, 3] {
        assert!(s.response(id).get("result").is_some());
    }
    let st = s.request("s", "stats", Value::Null);
    assert_eq!(result_of(&st)["queue"]["overloaded"], 1);
    assert_eq!(result_of(&st)["queue"]["peakQueued"], 2);
}

#[test]
fn deadline_while_queued() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    s.call(1, "debug/sleep", json!({"ms": 1500}));
    s.call(2, "debug/echo", json!({"_meta": {"timeoutMs": 100}}));
    let v = s.recv();
    assert_eq!(v["id"], 2, "the queued request times out first: {v}");
    assert_error(&v, -32001, "timeout");
    assert_eq!(v["error"]["data"]["stage"], "queued");
    assert_eq!(v["error"]["data"]["timeoutMs"], 100);
    assert!(s.response(1).get("result").is_some());
}

#[test]
fn deadline_while_running_stops_the_work_and_frees_the_slot() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    s.call(
        1,
        "debug/sleep",
        json!({"ms": 60_000, "_meta": {"timeoutMs": 150}}),
    );
    s.call(2, "debug/echo", json!({"after": true}));
    let v = s.recv();
    assert_eq!(v["id"], 1);
    assert_error(&v, -32001, "timeout");
    assert_eq!(v["error"]["data"]["stage"], "running");
    assert_eq!(result_of(&s.recv()), &json!({"after": true}));
}

#[test]
fn deadlines_racing_slot_handoff_never_leak_a_slot() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    for i in 0..40 {
        // The waiter's deadline lands when the slot is handed over.
        s.call(format!("s{i}"), "debug/sleep", json!({"ms": 5}));
        s.call(
            format!("e{i}"),
            "debug/echo",
            json!({"_meta": {"timeoutMs": 5 + (i % 3)}}),
        );
    }
    for i in 0..40 {
        s.response(format!("s{i}"));
        let e = s.response(format!("e{i}"));
        assert!(
            e.get("result").is_some() || e["error"]["data"]["kind"] == "timeout",
            "{e}"
        );
    }
    // The one slot is still there.
    assert_eq!(
        result_of(&s.request("last", "debug/echo", json!({"ok": 1}))),
        &json!({"ok": 1})
    );
    let h = s.request("h", "health", Value::Null);
    assert_eq!(result_of(&h)["inFlight"], 0);
    assert_eq!(result_of(&h)["queued"], 0);
}

#[test]
fn cancel_queued_and_running_under_both_names() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    s.call(1, "debug/sleep", json!({"ms": 60_000}));
    s.call(2, "debug/sleep", json!({"ms": 1}));
    s.call("three", "debug/sleep", json!({"ms": 1}));
    s.cancel(2);
    let v = s.recv();
    assert_eq!(v["id"], 2);
    assert_error(&v, -32800, "cancelled");
    s.notify("$/cancelRequest", json!({"id": "three"}));
    let v = s.recv();
    assert_eq!(v["id"], "three");
    assert_error(&v, -32800, "cancelled");
    let h = s.request("h", "health", Value::Null);
    assert_eq!(result_of(&h)["queued"], 0);
    s.notify(
        "notifications/cancelled",
        json!({"requestId": 1, "reason": "test"}),
    );
    let v = s.recv();
    assert_eq!(v["id"], 1);
    assert_error(&v, -32800, "cancelled");
    // The slot is free again.
    assert!(
        s.request(4, "debug/echo", json!({}))
            .get("result")
            .is_some()
    );
    // Unknown, finished and malformed cancellations do nothing.
    s.cancel(4);
    s.cancel(999);
    s.notify("notifications/cancelled", json!({}));
    s.notify("notifications/cancelled", json!({"requestId": {"x": 1}}));
    s.expect_silence(SHORT);
}

#[test]
fn progress_is_ordered_and_precedes_the_response() {
    let mut s = Sidecar::spawn(&[]);
    s.call(
        1,
        "debug/sleep",
        json!({"ms": 105, "_meta": {"progressToken": "tok"}}),
    );
    let mut last = 0.0;
    let mut count = 0;
    loop {
        let v = s.recv();
        if v.get("id").is_some() {
            assert_eq!(result_of(&v), &json!({"slept": 105}));
            break;
        }
        assert_eq!(v["method"], "notifications/progress");
        assert_eq!(v["params"]["progressToken"], "tok");
        assert_eq!(v["params"]["total"], 105.0);
        let p = v["params"]["progress"].as_f64().unwrap();
        assert!(p > last, "progress must increase: {p} after {last}");
        last = p;
        count += 1;
    }
    assert!(count >= 5, "one notification per 10 ms slept, got {count}");
    s.expect_silence(SHORT);
    // Integer tokens, and no progress without a token.
    s.call(
        2,
        "debug/sleep",
        json!({"ms": 25, "_meta": {"progressToken": 7}}),
    );
    loop {
        let v = s.recv();
        if v.get("id").is_some() {
            assert_eq!(v["id"], 2);
            break;
        }
        assert_eq!(v["params"]["progressToken"], 7);
    }
    s.call(3, "debug/sleep", json!({"ms": 25}));
    assert_eq!(s.recv()["id"], 3);
}

#[test]
fn no_progress_after_a_cancelled_response() {
    let mut s = Sidecar::spawn(&[]);
    s.call(
        1,
        "debug/sleep",
        json!({"ms": 5000, "_meta": {"progressToken": "p"}}),
    );
    assert_eq!(s.recv()["method"], "notifications/progress");
    s.cancel(1);
    loop {
        let v = s.recv();
        if v.get("id").is_some() {
            assert_error(&v, -32800, "cancelled");
            break;
        }
    }
    s.expect_silence(SHORT);
}

#[test]
fn a_panicking_handler_is_answered_and_the_server_lives_on() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "1"]);
    for i in 0..3 {
        let v = s.request(i, "debug/panic", Value::Null);
        assert_error(&v, -32603, "internal");
        assert!(v["error"]["message"].as_str().unwrap().contains("panicked"));
    }
    assert!(
        s.request(10, "debug/echo", json!({}))
            .get("result")
            .is_some()
    );
    let st = s.request(11, "stats", Value::Null);
    let m = &result_of(&st)["methods"];
    assert_eq!(m["debug/panic"]["count"], 3);
    assert_eq!(m["debug/panic"]["errors"]["internal"], 3);
    assert_eq!(m["debug/echo"]["ok"], 1);
    assert!(m["debug/echo"]["latencyUs"]["p50"].as_u64().unwrap() > 0);
}

#[test]
fn control_methods_never_wait_in_the_queue() {
    let mut s = Sidecar::spawn(&["--max-concurrency", "2", "--max-queue", "4"]);
    for i in 0..6 {
        s.call(
            i,
            "debug/sleep",
            json!({"ms": 2000, "_meta": {"priority": "low"}}),
        );
    }
    s.call("p", "ping", Value::Null);
    s.call("h", "health", Value::Null);
    s.call("s", "stats", Value::Null);
    for id in ["p", "h", "s"] {
        let v = s.recv();
        assert_eq!(v["id"], id, "control answered before any sleep: {v}");
    }
}
