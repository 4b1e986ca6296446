//! PROTOCOL.md §1–2, §8: framing, malformed input, ids, batches, duplicate ids.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn ready_names_the_process_and_its_methods() {
    let s = Sidecar::spawn(&[]);
    assert_eq!(s.ready["protocolVersion"], 1);
    assert_eq!(s.ready["pid"], s.pid());
    assert_eq!(s.ready["version"], env!("CARGO_PKG_VERSION"));
    let methods: Vec<&str> = s.ready["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in [
        "ping",
        "health",
        "stats",
        "shutdown",
        "debug/sleep",
        "debug/hang",
    ] {
        assert!(methods.contains(&m), "{m} missing from {methods:?}");
    }
}

#[test]
fn blank_lines_ignored_and_crlf_tolerated() {
    let mut s = Sidecar::spawn(&[]);
    s.send_bytes(b"\n\r\n   \n\t\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n");
    let v = s.recv();
    assert_eq!(v, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    s.expect_silence(SHORT);
}

#[test]
fn over_long_line_is_answered_and_the_stream_continues() {
    let mut s = Sidecar::spawn(&["--max-message-bytes", "1024"]);
    // Exactly at the limit is accepted.
    let pad = "x"
        .repeat(1024 - r#"{"jsonrpc":"2.0","id":1,"method":"debug/echo","params":{"p":""}}"#.len());
    let at_limit =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"debug/echo","params":{{"p":"{pad}"}}}}"#);
    assert_eq!(at_limit.len(), 1024);
    s.send_line(&at_limit);
    assert_eq!(result_of(&s.recv())["p"].as_str().unwrap().len(), pad.len());
    // One byte more is refused; sent in pieces to exercise the bound while reading.
    let over =
        format!(r#"{{"jsonrpc":"2.0","id":2,"method":"debug/echo","params":{{"p":"{pad}x"}}}}"#);
    let (a, b) = over.as_bytes().split_at(700);
    s.send_bytes(a);
    std::thread::sleep(Duration::from_millis(50));
    s.send_bytes(b);
    s.send_bytes(b"\n");
    // A much longer line as well.
    s.send_line(&"y".repeat(200_000));
    s.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    for len in [1025, 200_000] {
        let v = s.recv();
        assert_error(&v, -32600, "message_too_large");
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["data"]["limit"], 1024);
        assert_eq!(v["error"]["data"]["size"], len);
    }
    assert_eq!(s.recv()["id"], 3);
}

#[test]
fn malformed_input_matrix() {
    let mut s = Sidecar::spawn(&[]);
    // (line, code, kind, id echoed)
    let cases: Vec<(&str, i64, &str, Value)> = vec![
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"pi"#,
            -32700,
            "parse_error",
            Value::Null,
        ),
        ("not json", -32700, "parse_error", Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}}"#,
            -32700,
            "parse_error",
            Value::Null,
        ),
        ("5", -32600, "invalid_request", Value::Null),
        (r#""ping""#, -32600, "invalid_request", Value::Null),
        ("null", -32600, "invalid_request", Value::Null),
        ("true", -32600, "invalid_request", Value::Null),
        (
            r#"{"id":1,"method":"ping"}"#,
            -32600,
            "invalid_request",
            json!(1),
        ),
        (
            r#"{"jsonrpc":"1.0","id":2,"method":"ping"}"#,
            -32600,
            "invalid_request",
            json!(2),
        ),
        (
            r#"{"jsonrpc":2.0,"id":3,"method":"ping"}"#,
            -32600,
            "invalid_request",
            json!(3),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":5}"#,
            -32600,
            "invalid_request",
            json!(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5}"#,
            -32600,
            "invalid_request",
            json!(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"ping","params":5}"#,
            -32600,
            "invalid_request",
            json!(6),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","params":"x"}"#,
            -32600,
            "invalid_request",
            json!(7),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            -32600,
            "invalid_request",
            json!(1.5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            -32600,
            "invalid_request",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            -32600,
            "invalid_request",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            -32600,
            "invalid_request",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
            -32600,
            "invalid_request",
            Value::Null,
        ),
        (
            r#"{"jsonrpc":"2.0","method":5}"#,
            -32600,
            "invalid_request",
            Value::Null,
        ),
        (r#"{"foo":"bar"}"#, -32600, "invalid_request", Value::Null),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"no/such"}"#,
            -32601,
            "method_not_found",
            json!(8),
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"debug/sleep","params":{}}"#,
            -32602,
            "invalid_params",
            json!(9),
        ),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"debug/sleep","params":{"_meta":{"timeoutMs":0},"ms":1}}"#,
            -32602,
            "invalid_params",
            json!(10),
        ),
        (
            r#"{"jsonrpc":"2.0","id":11,"method":"debug/sleep","params":{"_meta":{"progressToken":1.5},"ms":1}}"#,
            -32602,
            "invalid_params",
            json!(11),
        ),
    ];
    for (line, code, kind, id) in &cases {
        s.send_line(line);
        let v = s.recv();
        assert_error(&v, *code, kind);
        assert_eq!(&v["id"], id, "{line} -> {v}");
        assert_eq!(v["jsonrpc"], "2.0");
    }
    // Invalid UTF-8, inside and outside a string.
    s.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}\n");
    s.send_bytes(b"\xc3\x28\n");
    for _ in 0..2 {
        let v = s.recv();
        assert_error(&v, -32700, "parse_error");
        assert_eq!(v["id"], Value::Null);
    }
    // invalid_params names the field.
    let v = s.request(12, "debug/sleep", json!({"ms": "soon"}));
    assert_eq!(error_of(&v)["data"]["details"]["field"], "ms");
    // Still serving.
    assert_eq!(result_of(&s.request(13, "ping", Value::Null)), &json!({}));
}

#[test]
fn ids_of_every_valid_kind_are_echoed_verbatim() {
    let mut s = Sidecar::spawn(&[]);
    for id in [
        "0",
        "-1",
        "9007199254740993",
        "18446744073709551616",
        "-123456789012345678901234567890",
        r#""""#,
        r#""é""#,
        r#""a\"b\\c\n""#,
        r#""\u00e9""#,
    ] {
        s.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
        let raw = String::from_utf8(s.recv_raw_timeout(WAIT).expect("response")).unwrap();
        assert_eq!(
            raw,
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}}}}\n"),
            "id {id}"
        );
    }
}

#[test]
fn notifications_and_responses_get_no_answer() {
    let mut s = Sidecar::spawn(&[]);
    s.send_line(r#"{"jsonrpc":"2.0","method":"no/such/notification"}"#);
    s.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}"#);
    s.send_line(r#"{"jsonrpc":"2.0","method":"debug/echo","params":{"x":1}}"#);
    s.send_line(r#"{"jsonrpc":"2.0","method":"ping"}"#);
    s.send_line(r#"{"jsonrpc":"2.0","id":77,"result":{}}"#);
    s.send_line(r#"{"jsonrpc":"2.0","id":78,"error":{"code":1,"message":"x"}}"#);
    s.cancel(12345);
    s.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(s.recv()["id"], 1, "nothing may precede the ping response");
    s.expect_silence(SHORT);
}

#[test]
fn batches() {
    let mut s = Sidecar::spawn(&[]);
    // Empty: one error, not an array.
    s.send_line("[]");
    let v = s.recv();
    assert!(v.is_object());
    assert_error(&v, -32600, "invalid_request");
    assert_eq!(v["id"], Value::Null);
    // All notifications: nothing.
    s.send_line(r#"[{"jsonrpc":"2.0","method":"ping"},{"jsonrpc":"2.0","method":"debug/echo","params":{}}]"#);
    // Mixed: requests, a notification, invalid elements.
    s.send_line(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","method":"no/such"},
            {"jsonrpc":"2.0","id":"two","method":"debug/echo","params":{"v":2}},
            {"jsonrpc":"2.0","id":3,"method":"debug/sleep","params":{"ms":30}},
            {"jsonrpc":"2.0","id":4,"method":"nope"},
            5,
            {"jsonrpc":"1.0","id":6,"method":"ping"}]"#
            .replace('\n', " ")
            .as_str(),
    );
    let v = s.recv();
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"));
    assert_eq!(arr.len(), 6, "{v}");
    let by_id = |id: Value| {
        arr.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {v}"))
    };
    assert_eq!(by_id(json!(1))["result"], json!({}));
    assert_eq!(by_id(json!("two"))["result"], json!({"v": 2}));
    assert_eq!(by_id(json!(3))["result"], json!({"slept": 30}));
    assert_error(by_id(json!(4)), -32601, "method_not_found");
    assert_error(by_id(json!(6)), -32600, "invalid_request");
    assert_error(by_id(Value::Null), -32600, "invalid_request");
    // Duplicate ids inside one batch: the first runs, the second is refused.
    s.send_line(r#"[{"jsonrpc":"2.0","id":7,"method":"debug/sleep","params":{"ms":50}},{"jsonrpc":"2.0","id":7,"method":"ping"}]"#);
    let v = s.recv();
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 2);
    assert!(
        arr.iter().any(|r| r["result"] == json!({"slept": 50})),
        "{v}"
    );
    assert!(
        arr.iter().any(|r| r
            .get("error")
            .is_some_and(|e| e["data"]["kind"] == "duplicate_id")),
        "{v}"
    );
    // A batch that is not JSON.
    s.send_line(r#"[{"jsonrpc":"2.0","id":8,"method":"ping"},"#);
    assert_error(&s.recv(), -32700, "parse_error");
    s.expect_silence(SHORT);
}

#[test]
fn duplicate_id_in_flight_does_not_disturb_the_first() {
    let mut s = Sidecar::spawn(&[]);
    s.call(1, "debug/sleep", json!({"ms": 300}));
    s.call(1, "debug/echo", json!({"second": true}));
    let v = s.recv();
    assert_error(&v, -32600, "duplicate_id");
    assert_eq!(v["id"], 1);
    let v = s.recv();
    assert_eq!(result_of(&v), &json!({"slept": 300}));
    // Once finished, the id may be used again.
    assert_eq!(
        result_of(&s.request(1, "debug/echo", json!({"a": 1}))),
        &json!({"a": 1})
    );
}

#[test]
fn stdout_carries_protocol_messages_only() {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(["serve", "--debug-methods", "--log-format", "json"])
        .env("RUST_LOG", "trace");
    let mut s = Sidecar::spawn_cmd(cmd);
    s.request(1, "debug/panic", Value::Null);
    s.send_line("garbage");
    s.recv();
    s.request(
        2,
        "debug/sleep",
        json!({"ms": 20, "_meta": {"progressToken": 1}}),
    );
    s.request(3, "stats", Value::Null);
    s.close_stdin();
    // `recv` asserts every line is one JSON message.
    let rest = s.drain();
    assert!(rest.iter().all(|v| v["jsonrpc"] == "2.0"));
    assert!(s.wait_exit().success());
    let stderr = s.stderr_text();
    assert!(stderr.contains("debug/panic requested"), "{stderr}");
    // JSON log lines on stderr.
    let first = stderr.lines().next().expect("logs");
    let log: Value = serde_json::from_str(first).expect("json log line");
    assert!(log.get("level").is_some(), "{first}");
}
