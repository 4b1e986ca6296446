//! `search/symbols` through the binary: definitions of every fixture language found by
//! name, ranked exact → prefix → sub-words → substring → typo; qualified names; kind,
//! language and path filters; symbols kept in step with the files by re-ingest and by a
//! watch; a 5 MB generated file ingested without stalling.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn fixtures() -> (tempfile::TempDir, PathBuf) {
    fixture_copy("symbols")
}

fn symbols(s: &mut Sidecar, params: Value) -> Vec<Value> {
    let v = s.request("s", "search/symbols", params);
    result_of(&v)["symbols"].as_array().unwrap().clone()
}

fn brief(hits: &[Value]) -> Vec<(String, String, String)> {
    hits.iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["kind"].as_str().unwrap().to_owned(),
                Path::new(h["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect()
}

#[test]
fn symbols_are_found_ranked_and_filtered() {
    let (_tmp, root) = fixtures();
    let mut s = Sidecar::spawn(&["--no-grpc"]);
    let v = s.request("i", "documents/ingestDir", json!({"root": root}));
    assert_eq!(result_of(&v)["files"], 9, "{v}");

    // Exact names first, every language that defines one.
    let hits = symbols(&mut s, json!({"query": "make_square"}));
    let top = brief(&hits);
    assert!(top.len() >= 4, "{top:?}");
    assert!(
        top[..4].iter().all(|(n, _, _)| n == "make_square"),
        "{top:?}"
    );
    let h = &hits[0];
    assert!(h["line"].as_u64().unwrap() >= 1 && h["endLine"].as_u64() >= h["line"].as_u64());
    assert!(h["score"].as_f64().unwrap() > 0.9);
    assert!(h["signature"].as_str().is_some(), "{h}");
    // Then prefixes, sub-words, substrings, typos.
    let top = brief(&symbols(&mut s, json!({"query": "makeSq"})));
    assert_eq!(top[0].0, "makeSquare", "{top:?}");
    let top = brief(&symbols(&mut s, json!({"query": "square"})));
    assert!(top.iter().any(|(n, _, _)| n == "make_square"), "{top:?}");
    let top = brief(&symbols(&mut s, json!({"query": "perimiter"})));
    assert_eq!(top[0].0, "perimeter", "{top:?}");
    let top = brief(&symbols(&mut s, json!({"query": "*_square"})));
    assert!(top.iter().all(|(n, _, _)| n.ends_with("_square")) && !top.is_empty());

    // Kinds and languages.
    let top = brief(&symbols(
        &mut s,
        json!({"query": "Shape", "kinds": ["struct"]}),
    ));
    // The exact name first (Go and Rust), then C's `shape` (the name ignoring case).
    let mut exact: Vec<&str> = top[..2].iter().map(|t| t.2.as_str()).collect();
    exact.sort();
    assert_eq!(exact, ["shapes.go", "shapes.rs"], "{top:?}");
    assert_eq!(top[2], ("shape".into(), "struct".into(), "shapes.c".into()));
    assert_eq!(top.len(), 3, "{top:?}");
    let top = brief(&symbols(
        &mut s,
        json!({"query": "Shape", "languages": ["python"]}),
    ));
    assert_eq!(top[0], ("Shape".into(), "class".into(), "shapes.py".into()));
    assert!(top.iter().all(|t| t.2 == "shapes.py"));
    // Qualified names.
    let hits = symbols(&mut s, json!({"query": "Shape.area"}));
    let mut defined: Vec<String> = brief(&hits)[..2].iter().map(|t| t.2.clone()).collect();
    defined.sort();
    assert_eq!(defined, ["shapes.js", "shapes.py"], "{hits:?}");
    assert!(hits[..2].iter().all(|h| h["container"] == "Shape"));
    // C++'s in-class declaration after the definitions.
    assert_eq!(hits[2]["container"], "geometry.Shape", "{hits:?}");
    let hits = symbols(&mut s, json!({"query": "geometry::perimeter"}));
    assert_eq!(
        brief(&hits)[0],
        ("perimeter".into(), "function".into(), "shapes.rs".into())
    );
    // A path prefix.
    let only = root.join("shapes.go");
    let top = brief(&symbols(
        &mut s,
        json!({"query": "Size", "filter": {"pathPrefix": only}}),
    ));
    assert!(top.iter().all(|t| t.2 == "shapes.go") && !top.is_empty());
    // Bad requests are typed errors.
    let v = s.request("b", "search/symbols", json!({"query": "  "}));
    assert_error(&v, -32602, "invalid_params");
    let v = s.request("b", "search/symbols", json!({"query": "x", "limit": 0}));
    assert_error(&v, -32602, "invalid_params");
}

#[test]
fn symbols_follow_edits_by_ingest_and_by_watch() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.py");
    std::fs::write(&file, "def old_name():\n    return 1\n").unwrap();
    let mut s = Sidecar::spawn(&["--no-grpc"]);
    let v = s.request("i", "documents/ingestDir", json!({"root": dir.path()}));
    result_of(&v);
    assert_eq!(
        brief(&symbols(&mut s, json!({"query": "old_name"})))[0].0,
        "old_name"
    );
    // Renamed and re-ingested: the old name is gone.
    std::fs::write(&file, "def new_name():\n    return 1\n").unwrap();
    let v = s.request("i2", "documents/ingestDir", json!({"root": dir.path()}));
    result_of(&v);
    assert!(symbols(&mut s, json!({"query": "old_name"})).is_empty());
    assert_eq!(
        brief(&symbols(&mut s, json!({"query": "new_name"})))[0].0,
        "new_name"
    );
    // Through a watch: saved, then found under the new name only.
    let v = s.request(
        "w",
        "watch/start",
        json!({"root": dir.path(), "debounceMs": 50}),
    );
    result_of(&v);
    std::fs::write(&file, "class Renamed:\n    pass\n").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let renamed = symbols(&mut s, json!({"query": "Renamed"}));
        let old = symbols(&mut s, json!({"query": "new_name"}));
        if !renamed.is_empty() && old.is_empty() {
            assert_eq!(renamed[0]["kind"], "class");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never updated the symbols"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_five_megabyte_generated_file_does_not_stall_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::with_capacity(5 << 20);
    let mut i = 0;
    while text.len() < 5 << 20 {
        text.push_str(&format!("def generated_{i}(x):\n    return x + {i}\n\n"));
        i += 1;
    }
    std::fs::write(dir.path().join("gen.py"), &text).unwrap();
    std::fs::write(dir.path().join("small.py"), "def tiny():\n    pass\n").unwrap();
    // The default 3 s parse budget is wall time: on a busy machine an unoptimised test
    // run can spend it; what this test checks is that the parse ends and finds all.
    let mut s = Sidecar::spawn(&[
        "--no-grpc",
        "--max-file-bytes",
        "8000000",
        "--parse-budget-ms",
        "170000",
    ]);
    s.call(
        "i",
        "documents/ingestDir",
        json!({"root": dir.path(), "_meta": {"timeoutMs": 170000}}),
    );
    // A generous bound for a debug build on a busy machine: what it guards against is
    // a parse or a symbol pass that never ends (the container pass was once quadratic).
    let v = loop {
        let m = s
            .recv_timeout(Duration::from_secs(180))
            .expect("the ingest of a 5 MB file never answered");
        if m["id"] == "i" {
            break m;
        }
    };
    assert_eq!(result_of(&v)["files"], 2, "{v}");
    assert_eq!(
        brief(&symbols(&mut s, json!({"query": "tiny"})))[0].0,
        "tiny"
    );
    let last = format!("generated_{}", i - 1);
    let hits = symbols(&mut s, json!({"query": last}));
    assert_eq!(hits[0]["name"], last.as_str(), "{hits:?}");
}
