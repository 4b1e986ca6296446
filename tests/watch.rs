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

/// The next `watch/event`, which must be for `path` (by suffix) and of `kind`: any
/// other event first is a stray and fails the test.
fn event(s: &mut Sidecar, path: &str, kind: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let Some(v) = s.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            panic!("no {kind} event for {path}");
        };
        if v["method"] != "watch/event" {
            continue;
        }
        let p = &v["params"];
        assert!(
            p["path"].as_str().unwrap().ends_with(path) && p["kind"] == kind,
            "expected {kind} {path}, got {p}"
        );
        return p.clone();
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
    let e = expect_exactly(&mut s, &root, &[("/a.txt", "created")]);
    assert_eq!(e[0]["watchId"], id.as_str());
    assert_eq!(e[0]["indexed"], true);
    assert!(hits(&mut s, "1", "aardvark")[0].ends_with("/a.txt"));

    std::fs::write(root.join("a.txt"), "the axolotl swims\n").unwrap();
    expect_exactly(&mut s, &root, &[("/a.txt", "modified")]);
    assert!(hits(&mut s, "2", "axolotl")[0].ends_with("/a.txt"));
    assert!(hits(&mut s, "3", "aardvark").is_empty());

    // A rename reports both ends: the old path leaves the index, the new one enters.
    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[("/a.txt", "renamed"), ("/b.txt", "renamed")],
    );
    let h = hits(&mut s, "4", "axolotl");
    assert_eq!(h.len(), 1);
    assert!(h[0].ends_with("/b.txt"), "{h:?}");

    // An editor's atomic save: write a hidden temp file, rename it over the original.
    std::fs::write(root.join(".b.txt.swp"), "the bonobo climbs\n").unwrap();
    std::fs::rename(root.join(".b.txt.swp"), root.join("b.txt")).unwrap();
    expect_exactly(&mut s, &root, &[("/b.txt", "modified")]);
    assert!(hits(&mut s, "5", "bonobo")[0].ends_with("/b.txt"));
    assert!(hits(&mut s, "6", "axolotl").is_empty());

    // A touch that changes nothing sends nothing.
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    expect_exactly(&mut s, &root, &[]);

    std::fs::remove_file(root.join("b.txt")).unwrap();
    expect_exactly(&mut s, &root, &[("/b.txt", "deleted")]);
    assert!(hits(&mut s, "7", "bonobo").is_empty());

    // A file that cannot be indexed does not stop the watch.
    std::fs::write(root.join("blob.txt"), b"\x00\x00binary").unwrap();
    let e = expect_exactly(&mut s, &root, &[("/blob.txt", "created")]);
    assert_eq!(e[0]["indexed"], false);
    assert!(e[0]["error"].as_str().unwrap().contains("binary"));
    std::fs::write(root.join("c.txt"), "the capybara rests\n").unwrap();
    expect_exactly(&mut s, &root, &[("/c.txt", "created")]);
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
    expect_exactly(
        &mut s,
        &root,
        &[("/x/one.md", "created"), ("/x/y/z/two.txt", "created")],
    );
    assert_eq!(hits(&mut s, "1", "echidna").len(), 1);

    // A moved folder reports both ends of every file in it.
    std::fs::rename(root.join("x"), root.join("moved")).unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[
            ("/x/one.md", "renamed"),
            ("/x/y/z/two.txt", "renamed"),
            ("/moved/one.md", "renamed"),
            ("/moved/y/z/two.txt", "renamed"),
        ],
    );
    let h = hits(&mut s, "2", "echidna");
    assert_eq!(h.len(), 1);
    assert!(h[0].contains("/moved/y/z/"), "{h:?}");

    std::fs::remove_dir_all(root.join("moved")).unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[
            ("/moved/one.md", "deleted"),
            ("/moved/y/z/two.txt", "deleted"),
        ],
    );
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
    // Only the kept file: nothing for the ignored folder or the excluded glob.
    expect_exactly(&mut s, &root, &[("/kept.txt", "created")]);
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

/// Reads `watch/event`s until exactly `expected` (path suffix, kind) were seen, then
/// proves nothing else came: a sentinel file is created at the root and every event
/// before its own must have been expected (bursts are applied in order).
fn expect_exactly(s: &mut Sidecar, root: &Path, expected: &[(&str, &str)]) -> Vec<Value> {
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(p, k)| (p.to_string(), k.to_string()))
        .collect();
    let mut matched = Vec::new();
    let mut stray = Vec::new();
    let n = SENTINEL.with(|c| {
        let n = c.get() + 1;
        c.set(n);
        n
    });
    let sentinel = format!("/zz-sentinel-{n}.txt");
    let mut sentinel_written = false;
    let deadline = Instant::now() + WAIT;
    loop {
        if want.is_empty() && !sentinel_written {
            std::fs::write(root.join(&sentinel[1..]), format!("sentinel number {n}\n")).unwrap();
            sentinel_written = true;
            want.push((sentinel.clone(), "created".into()));
        }
        let Some(v) = s.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            panic!("still waiting for {want:?}; strays so far: {stray:?}");
        };
        if v["method"] != "watch/event" {
            continue;
        }
        let p = &v["params"];
        let path = p["path"].as_str().unwrap();
        let kind = p["kind"].as_str().unwrap();
        match want
            .iter()
            .position(|(w, k)| path.ends_with(w.as_str()) && k == kind)
        {
            Some(i) => {
                want.remove(i);
                if !path.ends_with(&sentinel) {
                    matched.push(p.clone());
                }
                if sentinel_written && want.is_empty() {
                    assert!(stray.is_empty(), "unexpected events: {stray:?}");
                    return matched;
                }
            }
            None => stray.push(p.clone()),
        }
    }
}

thread_local! {
    static SENTINEL: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[test]
fn nested_trees_keep_their_files_at_every_level() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("src/deep")).unwrap();
    std::fs::write(root.join("README.md"), "# Top\nthe ibis wades\n").unwrap();
    std::fs::write(
        root.join("src/a.py"),
        "def jackal():\n    return 'jackal'\n",
    )
    .unwrap();
    std::fs::write(
        root.join("src/deep/b.py"),
        "def kudu():\n    return 'kudu'\n",
    )
    .unwrap();
    let mut s = Sidecar::spawn(&[]);
    start(&mut s, &root);
    let all = |s: &mut Sidecar, tag: &str| {
        for (q, file) in [
            ("ibis", "/README.md"),
            ("jackal", "/src/a.py"),
            ("kudu", "/b.py"),
        ] {
            let h = hits(s, &format!("{tag}-{q}"), q);
            assert_eq!(h.len(), 1, "{q} after {tag}: {h:?}");
            assert!(h[0].ends_with(file), "{q} after {tag}: {h:?}");
        }
    };
    all(&mut s, "start");

    // An edit at the top leaves every file below in the index.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("README.md"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"one more line\n").unwrap();
    drop(f);
    expect_exactly(&mut s, &root, &[("/README.md", "modified")]);
    all(&mut s, "top");

    // In the middle, and at the bottom.
    std::fs::write(
        root.join("src/a.py"),
        "def jackal():\n    return 'jackal!'\n",
    )
    .unwrap();
    expect_exactly(&mut s, &root, &[("/src/a.py", "modified")]);
    all(&mut s, "middle");
    std::fs::write(
        root.join("src/deep/b.py"),
        "def kudu():\n    return 'kudu!'\n",
    )
    .unwrap();
    expect_exactly(&mut s, &root, &[("/src/deep/b.py", "modified")]);
    all(&mut s, "bottom");

    // The same bytes again: nothing applied, nothing sent, nothing lost.
    std::fs::write(
        root.join("src/a.py"),
        "def jackal():\n    return 'jackal!'\n",
    )
    .unwrap();
    expect_exactly(&mut s, &root, &[]);
    all(&mut s, "same bytes");

    // Created into new nested folders.
    std::fs::create_dir_all(root.join("src/new/inner")).unwrap();
    std::fs::write(root.join("src/new/inner/c.txt"), "the lemur leaps\n").unwrap();
    std::fs::write(root.join("src/new/d.txt"), "the marmot whistles\n").unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[
            ("/src/new/inner/c.txt", "created"),
            ("/src/new/d.txt", "created"),
        ],
    );
    all(&mut s, "create");

    // A folder renamed: both ends of every file in it, nothing else.
    std::fs::rename(root.join("src/deep"), root.join("src/moved")).unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[
            ("/src/deep/b.py", "renamed"),
            ("/src/moved/b.py", "renamed"),
        ],
    );
    all(&mut s, "rename");
    assert!(hits(&mut s, "kudu-moved", "kudu")[0].ends_with("/src/moved/b.py"));

    // A folder deleted: its files go, the others stay.
    std::fs::remove_dir_all(root.join("src/new")).unwrap();
    expect_exactly(
        &mut s,
        &root,
        &[
            ("/src/new/inner/c.txt", "deleted"),
            ("/src/new/d.txt", "deleted"),
        ],
    );
    all(&mut s, "delete");
    assert!(hits(&mut s, "lemur", "lemur").is_empty());
}

#[test]
fn concurrent_starts_cannot_exceed_the_watch_limit() {
    // Each start reconciles hundreds of files first; both starts are in flight at once.
    let trees: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for t in &trees {
        for i in 0..300 {
            std::fs::write(
                t.path().join(format!("f{i}.txt")),
                format!("file {i} of a tree\n"),
            )
            .unwrap();
        }
    }
    let mut s = Sidecar::spawn(&["--max-watches", "2"]);
    for (i, t) in trees.iter().enumerate() {
        s.call(i, "watch/start", json!({"root": t.path()}));
    }
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..trees.len() {
        let v = s.response(i);
        if v.get("result").is_some() {
            ok += 1;
        } else {
            assert_error(&v, -32002, "overloaded");
            refused += 1;
        }
    }
    assert_eq!((ok, refused), (2, 1));
    let v = s.request("l", "watch/list", Value::Null);
    assert_eq!(result_of(&v)["watches"].as_array().unwrap().len(), 2);
}
