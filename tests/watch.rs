//! PROTOCOL.md §9 `watch/*` with real file operations in temp folders: each change
//! produces its `watch/event` after the index applied it, and search reflects it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn hits(s: &mut Sidecar, id: &str, query: &str) -> Vec<String> {
    let v = s.request(id, "search/query", json!({"query": query, "limit": 20}));
    result_of(&v)["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect()
}

thread_local! {
    /// Watch events received but not yet asked for (they may come in any order).
    static SEEN: std::cell::RefCell<Vec<Value>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits for a `watch/event` for `path` (by suffix) of `kind`, in any order.
fn event(s: &mut Sidecar, path: &str, kind: &str) -> Value {
    let matches = |v: &Value| {
        v["params"]["path"].as_str().unwrap().ends_with(path) && v["params"]["kind"] == kind
    };
    let earlier = SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        let pos = seen.iter().position(matches)?;
        Some(seen.remove(pos))
    });
    if let Some(v) = earlier {
        return v["params"].clone();
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let Some(v) = s.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let seen = SEEN.with(|seen| seen.borrow().clone());
            panic!("no {kind} event for {path}; unclaimed events: {seen:?}");
        };
        if v["method"] != "watch/event" {
            continue;
        }
        if matches(&v) {
            return v["params"].clone();
        }
        SEEN.with(|seen| seen.borrow_mut().push(v));
    }
}

fn start(s: &mut Sidecar, root: &Path) -> String {
    let v = s.request(
        "start",
        "watch/start",
        json!({"root": root, "debounceMs": 50}),
    );
    result_of(&v)["watchId"].as_str().unwrap().to_owned()
}

#[test]
fn create_modify_delete_rename_and_atomic_save() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(
        root.join("before.txt"),
        "an okapi was here before the watch\n",
    )
    .unwrap();
    let mut s = Sidecar::spawn(&[]);
    let id = start(&mut s, &root);
    // Reconciled on start.
    assert_eq!(hits(&mut s, "0", "okapi").len(), 1);

    std::fs::write(root.join("a.txt"), "the aardvark digs\n").unwrap();
    let e = event(&mut s, "/a.txt", "created");
    assert_eq!(e["watchId"], id.as_str());
    assert_eq!(e["indexed"], true);
    assert!(hits(&mut s, "1", "aardvark")[0].ends_with("/a.txt"));

    std::fs::write(root.join("a.txt"), "the axolotl swims\n").unwrap();
    event(&mut s, "/a.txt", "modified");
    assert!(hits(&mut s, "2", "axolotl")[0].ends_with("/a.txt"));
    assert!(hits(&mut s, "3", "aardvark").is_empty());

    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    event(&mut s, "/b.txt", "renamed");
    let h = hits(&mut s, "4", "axolotl");
    assert_eq!(h.len(), 1);
    assert!(h[0].ends_with("/b.txt"), "{h:?}");

    // An editor's atomic save: write a temp file, rename it over the original.
    std::fs::write(root.join(".b.txt.swp"), "the bonobo climbs\n").unwrap();
    std::fs::rename(root.join(".b.txt.swp"), root.join("b.txt")).unwrap();
    event(&mut s, "/b.txt", "modified");
    assert!(hits(&mut s, "5", "bonobo")[0].ends_with("/b.txt"));
    assert!(hits(&mut s, "6", "axolotl").is_empty());

    std::fs::remove_file(root.join("b.txt")).unwrap();
    event(&mut s, "/b.txt", "deleted");
    assert!(hits(&mut s, "7", "bonobo").is_empty());

    // A file that cannot be indexed does not stop the watch.
    std::fs::write(root.join("blob.txt"), b"\x00\x00binary").unwrap();
    let e = event(&mut s, "/blob.txt", "created");
    assert_eq!(e["indexed"], false);
    assert!(e["error"].as_str().unwrap().contains("binary"));
    std::fs::write(root.join("c.txt"), "the capybara rests\n").unwrap();
    event(&mut s, "/c.txt", "created");
}

#[test]
fn folder_trees_created_moved_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let mut s = Sidecar::spawn(&[]);
    start(&mut s, &root);
    std::fs::create_dir_all(root.join("x/y/z")).unwrap();
    std::fs::write(root.join("x/one.md"), "# One\nthe dingo howls\n").unwrap();
    std::fs::write(root.join("x/y/z/two.txt"), "the echidna waddles\n").unwrap();
    event(&mut s, "/x/one.md", "created");
    event(&mut s, "/x/y/z/two.txt", "created");
    assert_eq!(hits(&mut s, "1", "echidna").len(), 1);

    std::fs::rename(root.join("x"), root.join("moved")).unwrap();
    event(&mut s, "/moved/y/z/two.txt", "renamed");
    let h = hits(&mut s, "2", "echidna");
    assert_eq!(h.len(), 1);
    assert!(h[0].contains("/moved/y/z/"), "{h:?}");

    std::fs::remove_dir_all(root.join("moved")).unwrap();
    event(&mut s, "/moved/one.md", "deleted");
    assert!(hits(&mut s, "3", "dingo").is_empty());
    assert!(hits(&mut s, "4", "echidna").is_empty());
}

#[test]
fn ignore_rules_and_globs_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::write(root.join(".gitignore"), "build/\n").unwrap();
    let mut s = Sidecar::spawn(&[]);
    let v = s.request(
        "start",
        "watch/start",
        json!({"root": root, "debounceMs": 50, "exclude": ["*.log"]}),
    );
    assert!(result_of(&v)["watchId"].is_string());
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::write(root.join("build/out.txt"), "a flamingo in build\n").unwrap();
    std::fs::write(root.join("run.log"), "a flamingo in a log\n").unwrap();
    std::fs::write(root.join("kept.txt"), "a flamingo kept\n").unwrap();
    event(&mut s, "/kept.txt", "created");
    std::thread::sleep(Duration::from_millis(300));
    let h = hits(&mut s, "1", "flamingo");
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].ends_with("/kept.txt"));
}

#[test]
fn list_stop_limits_and_root_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("watched");
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut s = Sidecar::spawn(&["--max-watches", "2"]);
    let a = start(&mut s, &root);
    let b = start(&mut s, other.path());
    let v = s.request("l", "watch/list", Value::Null);
    let list = result_of(&v)["watches"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|w| w["watchId"] == a.as_str()
        && w["root"] == root.to_str().unwrap()
        && w["collection"] == "default"));
    let third = tempfile::tempdir().unwrap();
    let v = s.request("3", "watch/start", json!({"root": third.path()}));
    assert_error(&v, -32002, "overloaded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-watches")
    );
    assert_error(
        &s.request("4", "watch/start", json!({"root": root.join("nope")})),
        -32010,
        "not_found",
    );
    assert_error(
        &s.request("5", "watch/start", json!({"root": root, "debounceMs": 0})),
        -32602,
        "invalid_params",
    );

    assert_eq!(
        result_of(&s.request("6", "watch/stop", json!({"watchId": b})))["stopped"],
        true
    );
    assert_eq!(
        result_of(&s.request("7", "watch/stop", json!({"watchId": b})))["stopped"],
        false
    );
    std::fs::write(other.path().join("late.txt"), "a gecko after the stop\n").unwrap();

    std::fs::write(root.join("g.txt"), "the gnu grazes\n").unwrap();
    event(&mut s, "/g.txt", "created");
    std::fs::remove_dir_all(&root).unwrap();
    let e = event(&mut s, "/watched", "deleted");
    assert_eq!(e["indexed"], false);
    assert!(e["error"].as_str().unwrap().contains("root was deleted"));
    assert!(hits(&mut s, "8", "gnu").is_empty());
    assert!(
        hits(&mut s, "9", "gecko").is_empty(),
        "stopped watches apply nothing"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let v = s.request("l2", "watch/list", Value::Null);
        if result_of(&v)["watches"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the ended watch is still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}
