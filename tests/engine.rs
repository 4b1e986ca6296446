//! PROTOCOL.md §9 over the real binary, the real embedded store and real files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// A fresh copy of the committed corpus (tests modify their copy).
fn corpus() -> (tempfile::TempDir, PathBuf) {
    fixture_copy("corpus")
}

fn ingest_dir(s: &mut Sidecar, id: &str, params: Value) -> Value {
    let v = s.request(id, "documents/ingestDir", params);
    result_of(&v).clone()
}

fn search(s: &mut Sidecar, id: &str, params: Value) -> Vec<Value> {
    let v = s.request(id, "search/query", params);
    result_of(&v)["hits"].as_array().unwrap().clone()
}

fn first_file(hits: &[Value]) -> String {
    let p = hits.first().expect("at least one hit")["path"]
        .as_str()
        .unwrap();
    Path::new(p)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn ranking_puts_the_defining_file_first() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    let r = ingest_dir(&mut s, "i", json!({"root": root}));
    assert_eq!(r["files"], 10, "{r}");
    assert_eq!(r["unchanged"], 0);
    assert!(r["chunks"].as_u64().unwrap() > 30, "{r}");
    for (query, file) in [
        ("dedent", "textwrap.py"),
        (
            "remove common leading whitespace from every line",
            "textwrap.py",
        ),
        ("shlex.split", "shlex.py"),
        ("split a string using shell-like syntax", "shlex.py"),
        ("rgb_to_hsv", "colorsys.py"),
        ("convert a color from RGB to HSV", "colorsys.py"),
        ("insort_left", "bisect.py"),
        (
            "insert an item into a sorted list keeping it sorted",
            "bisect.py",
        ),
        ("heappush", "heapq.py"),
        (
            "translate a shell pattern to a regular expression",
            "fnmatch.py",
        ),
        ("format an integer into a decimal string buffer", "itoa.rs"),
        ("serde_json::from_str", "serde_json.md"),
    ] {
        let hits = search(&mut s, query, json!({"query": query, "limit": 5}));
        assert_eq!(first_file(&hits), file, "query {query:?}: {hits:#?}");
    }
    // Hit shape.
    let hits = search(&mut s, "h", json!({"query": "dedent", "limit": 3}));
    let h = &hits[0];
    assert!(Path::new(h["path"].as_str().unwrap()).is_absolute());
    assert!(
        h["path"]
            .as_str()
            .unwrap()
            .starts_with(root.to_str().unwrap())
    );
    assert_eq!(h["language"], "python");
    assert!(h["score"].as_f64().unwrap() > 0.0);
    let (start, end) = (
        h["startLine"].as_u64().unwrap(),
        h["endLine"].as_u64().unwrap(),
    );
    assert!(1 <= start && start <= end, "{h}");
    assert!(h["snippet"].as_str().unwrap().contains("dedent"), "{h}");
    let sl = h["snippetLine"].as_u64().unwrap();
    assert!(start <= sl && sl <= end);
    assert!(h["chunkIndex"].is_u64());
    // The snippet's lines are the file's lines.
    let file = std::fs::read_to_string(h["path"].as_str().unwrap()).unwrap();
    let first_snippet_line = h["snippet"].as_str().unwrap().lines().next().unwrap();
    assert!(
        file.lines()
            .nth(sl as usize - 1)
            .unwrap()
            .starts_with(first_snippet_line.trim_end_matches('…')),
        "{h}"
    );
    // Deduplicated per chunk.
    let hits = search(
        &mut s,
        "d",
        json!({"query": "heap heappush heappop heapify", "limit": 50}),
    );
    let mut keys: Vec<(String, u64)> = hits
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_owned(),
                h["chunkIndex"].as_u64().unwrap(),
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
}

#[test]
fn ingest_is_idempotent_and_follows_modify_and_delete() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    let first = ingest_dir(&mut s, "1", json!({"root": root}));
    let again = ingest_dir(&mut s, "2", json!({"root": root}));
    assert_eq!(again["files"], first["files"]);
    assert_eq!(again["unchanged"], first["files"]);
    assert_eq!(again["chunks"], 0);
    assert_eq!(again["removed"], 0);
    let before = s.request("l", "collections/list", Value::Null);
    let before = result_of(&before)["collections"][0].clone();
    assert_eq!(before["name"], "default");
    assert_eq!(before["documents"], 10);

    // Modify: the file is re-indexed, old content is gone.
    let tw = root.join("python/textwrap.py");
    let text = std::fs::read_to_string(&tw)
        .unwrap()
        .replace("def dedent(", "def undent_everything(");
    std::fs::write(&tw, text + "\ndef frobnicate_widgets():\n    return 42\n").unwrap();
    let r = ingest_dir(&mut s, "3", json!({"root": root}));
    assert_eq!(r["unchanged"], 9, "{r}");
    assert!(r["chunks"].as_u64().unwrap() > 0);
    assert_eq!(
        first_file(&search(&mut s, "f", json!({"query": "frobnicate_widgets"}))),
        "textwrap.py"
    );
    let old = search(&mut s, "o", json!({"query": "def dedent"}));
    assert!(
        old.iter()
            .all(|h| !h["snippet"].as_str().unwrap().contains("def dedent(")),
        "old chunks of a changed file must be gone: {old:#?}"
    );
    let after = s.request("l2", "collections/list", Value::Null);
    assert_eq!(result_of(&after)["collections"][0]["documents"], 10);

    // Delete: the document leaves the index.
    std::fs::remove_file(root.join("python/colorsys.py")).unwrap();
    let r = ingest_dir(&mut s, "4", json!({"root": root}));
    assert_eq!(r["removed"], 1, "{r}");
    assert_eq!(r["files"], 9);
    let hits = search(&mut s, "c", json!({"query": "rgb_to_hsv hls_to_rgb"}));
    assert!(
        hits.iter()
            .all(|h| !h["path"].as_str().unwrap().ends_with("colorsys.py"))
    );
    let after = s.request("l3", "collections/list", Value::Null);
    assert_eq!(result_of(&after)["collections"][0]["documents"], 9);
}

#[test]
fn the_index_survives_a_restart() {
    let (_tmp, root) = corpus();
    let data = tempfile::tempdir().unwrap();
    let mut s = Sidecar::spawn_in(data.path(), &[]);
    ingest_dir(&mut s, "1", json!({"root": root, "collection": "kept"}));
    let list = s.request("l", "collections/list", Value::Null);
    let list = result_of(&list).clone();
    s.request("bye", "shutdown", Value::Null);
    assert!(s.wait_exit().success());

    let mut s = Sidecar::spawn_in(data.path(), &[]);
    assert_eq!(
        result_of(&s.request("l", "collections/list", Value::Null)),
        &list
    );
    let hits = search(
        &mut s,
        "q",
        json!({"query": "dedent", "collection": "kept"}),
    );
    assert_eq!(first_file(&hits), "textwrap.py");
    let r = ingest_dir(&mut s, "2", json!({"root": root, "collection": "kept"}));
    assert_eq!(r["unchanged"], 10);
}

#[test]
fn include_and_exclude_globs() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    let r = ingest_dir(
        &mut s,
        "1",
        json!({"root": root, "collection": "md", "include": ["docs/*.md"]}),
    );
    assert_eq!(r["files"], 2, "{r}");
    let r = ingest_dir(
        &mut s,
        "2",
        json!({"root": root, "collection": "nopy", "exclude": ["python/", "*.md"]}),
    );
    assert_eq!(r["files"], 1, "{r}");
    let hits = search(
        &mut s,
        "3",
        json!({"query": "integer", "collection": "nopy"}),
    );
    assert!(hits.iter().all(|h| h["language"] == "rust"), "{hits:#?}");
    let v = s.request(
        "4",
        "documents/ingestDir",
        json!({"root": root, "include": ["[unclosed"]}),
    );
    assert_error(&v, -32602, "invalid_params");
    assert_eq!(v["error"]["data"]["details"]["field"], "include");
}

#[test]
fn awkward_files_are_skipped_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let w = |name: &str, bytes: &[u8]| {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w("ok.txt", b"plain words about zebras\n");
    w("blob.dat", b"\x00\x01\x02binary\x00stuff");
    w("image.png", b"not really a png but named like one");
    w("empty.txt", b"");
    w("huge.txt", "elephant ".repeat(1000).as_bytes());
    let mut latin1 = b"caf\xe9 ".repeat(200);
    latin1.extend_from_slice(b"\n");
    w("latin1.txt", &latin1);
    let mut mostly_utf8 = "giraffe necks are long and this line is plain ascii text\n"
        .repeat(20)
        .into_bytes();
    mostly_utf8.extend_from_slice(b"one stray byte \xff here\n");
    w("lossy.txt", &mostly_utf8);
    w(".hidden.txt", b"hidden walrus\n");
    w(".gitignore", b"ignored.txt\n");
    w("ignored.txt", b"ignored walrus\n");
    w("sub/deep.md", b"# Heading\nkoala facts\n");
    std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("missing-target"), root.join("dangling.txt")).unwrap();
    let fifo = root.join("pipe.txt");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    let mut s = Sidecar::spawn(&["--max-file-bytes", "4000"]);
    let r = ingest_dir(&mut s, "1", json!({"root": root}));
    let skipped: Vec<(String, String)> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let p = x["path"].as_str().unwrap();
            (
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                x["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not in skipped: {skipped:?}"))
    };
    assert!(reason("blob.dat").contains("binary"), "{skipped:?}");
    assert!(reason("image.png").contains("binary"), "{skipped:?}");
    assert!(reason("empty.txt").contains("empty"), "{skipped:?}");
    assert!(reason("huge.txt").contains("too large"), "{skipped:?}");
    assert!(reason("latin1.txt").contains("UTF-8"), "{skipped:?}");
    assert!(reason("loop").contains("loop"), "{skipped:?}");
    assert!(
        reason("dangling.txt").contains("unreadable") || reason("dangling.txt").contains("no such"),
        "{skipped:?}"
    );
    assert!(reason("pipe.txt").contains("regular file"), "{skipped:?}");
    assert!(
        !skipped
            .iter()
            .any(|(n, _)| n == ".hidden.txt" || n == "ignored.txt")
    );
    // ok.txt, lossy.txt, sub/deep.md.
    assert_eq!(r["files"], 3, "{r}");
    assert_eq!(
        first_file(&search(&mut s, "z", json!({"query": "zebras"}))),
        "ok.txt"
    );
    assert_eq!(
        first_file(&search(&mut s, "g", json!({"query": "giraffe"}))),
        "lossy.txt"
    );
    assert_eq!(
        first_file(&search(&mut s, "k", json!({"query": "koala"}))),
        "deep.md"
    );
    assert!(search(&mut s, "w", json!({"query": "walrus"})).is_empty());
}

#[test]
fn errors_carry_their_kinds() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    let missing = root.join("no/such/place");
    let file = root.join("python/bisect.py");
    let cases = [
        (
            "documents/ingestDir",
            json!({"root": missing}),
            -32010,
            "not_found",
        ),
        (
            "documents/ingestDir",
            json!({"root": file}),
            -32011,
            "invalid_path",
        ),
        (
            "documents/ingest",
            json!({"path": missing}),
            -32010,
            "not_found",
        ),
        (
            "documents/ingest",
            json!({"path": root}),
            -32011,
            "invalid_path",
        ),
        (
            "documents/ingest",
            json!({"path": file, "collection": "bad name"}),
            -32602,
            "invalid_params",
        ),
        (
            "search/query",
            json!({"query": "anything", "collection": "nope"}),
            -32010,
            "not_found",
        ),
        (
            "search/query",
            json!({"query": "!!! ..."}),
            -32602,
            "invalid_params",
        ),
        (
            "search/query",
            json!({"query": "anything", "limit": 0}),
            -32602,
            "invalid_params",
        ),
        (
            "search/query",
            json!({"limit": 3}),
            -32602,
            "invalid_params",
        ),
        ("documents/delete", json!({}), -32602, "invalid_params"),
        (
            "collections/create",
            json!({"name": "no/slashes"}),
            -32602,
            "invalid_params",
        ),
    ];
    for (i, (method, params, code, kind)) in cases.iter().enumerate() {
        let v = s.request(i as u64, method, params.clone());
        assert_error(&v, *code, kind);
    }
    let bin = root.join("blob.bin");
    std::fs::write(&bin, b"\x00\x00\x00").unwrap();
    let bin2 = root.join("blob.txt");
    std::fs::write(&bin2, b"\x00\x00\x00").unwrap();
    for p in [bin, bin2] {
        assert_error(
            &s.request("b", "documents/ingest", json!({"path": p})),
            -32012,
            "unsupported_content",
        );
    }
    // The default collection answers no hits before anything was ingested.
    assert_eq!(search(&mut s, "e", json!({"query": "anything"})).len(), 0);
}

#[test]
fn single_documents_collections_and_deletes() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    let file = root.join("python/heapq.py");
    let v = s.request(
        1,
        "documents/ingest",
        json!({"path": file, "collection": "one"}),
    );
    let r = result_of(&v).clone();
    assert_eq!(r["unchanged"], false);
    assert!(r["chunks"].as_u64().unwrap() > 5);
    assert_eq!(r["path"], file.to_str().unwrap());
    let doc_id = r["documentId"].as_str().unwrap().to_owned();
    let v = s.request(
        2,
        "documents/ingest",
        json!({"path": file, "collection": "one"}),
    );
    assert_eq!(result_of(&v)["unchanged"], true);
    assert_eq!(result_of(&v)["chunks"], r["chunks"]);
    // Relative paths resolve against the server's working directory.
    let rel = s.request(
        3,
        "documents/ingest",
        json!({"path": "Cargo.toml", "collection": "one"}),
    );
    assert!(Path::new(result_of(&rel)["path"].as_str().unwrap()).is_absolute());
    // Inline content with metadata.
    let v = s.request(
        4,
        "documents/ingest",
        json!({"path": "notes/meeting.md", "collection": "one", "content": "# Notes\nquokka sightings rose", "metadata": {"author": "ann"}}),
    );
    assert_eq!(result_of(&v)["chunks"], 1);
    let hits = search(&mut s, "q", json!({"query": "quokka", "collection": "one"}));
    assert_eq!(first_file(&hits), "meeting.md");
    assert_eq!(hits[0]["language"], "markdown");

    let v = s.request(5, "collections/list", Value::Null);
    let cols = result_of(&v)["collections"].as_array().unwrap().clone();
    let one = cols.iter().find(|c| c["name"] == "one").unwrap();
    assert_eq!(one["documents"], 3);

    let v = s.request(
        6,
        "documents/delete",
        json!({"documentId": doc_id, "collection": "one"}),
    );
    assert_eq!(result_of(&v)["deleted"], 1);
    assert!(
        search(
            &mut s,
            "h",
            json!({"query": "heappush", "collection": "one"})
        )
        .is_empty()
    );
    let v = s.request(
        7,
        "documents/delete",
        json!({"path": root, "collection": "one"}),
    );
    assert_eq!(result_of(&v)["deleted"], 0, "heapq.py was already gone");

    assert_eq!(
        result_of(&s.request(8, "collections/create", json!({"name": "two"})))["created"],
        true
    );
    assert_eq!(
        result_of(&s.request(9, "collections/create", json!({"name": "two"})))["created"],
        false
    );
    assert_eq!(
        result_of(&s.request(10, "collections/delete", json!({"name": "two"})))["deleted"],
        true
    );
    assert_eq!(
        result_of(&s.request(11, "collections/delete", json!({"name": "two"})))["deleted"],
        false
    );
    assert_error(
        &s.request(
            12,
            "search/query",
            json!({"query": "anything", "collection": "two"}),
        ),
        -32010,
        "not_found",
    );
}

#[test]
fn search_filters_by_path_prefix_and_language() {
    let (_tmp, root) = corpus();
    let mut s = Sidecar::spawn(&[]);
    ingest_dir(&mut s, "i", json!({"root": root}));
    let docs = root.join("docs");
    let hits = search(
        &mut s,
        "1",
        json!({"query": "rust crate", "limit": 20, "filter": {"pathPrefix": docs}}),
    );
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| {
        h["path"]
            .as_str()
            .unwrap()
            .starts_with(docs.to_str().unwrap())
    }));
    let hits = search(
        &mut s,
        "2",
        json!({"query": "integer", "limit": 20, "filter": {"languages": ["rust"]}}),
    );
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h["language"] == "rust"));
    let hits = search(
        &mut s,
        "3",
        json!({"query": "string", "limit": 50, "filter": {"languages": ["python", "markdown"]}}),
    );
    assert!(hits.iter().any(|h| h["language"] == "python"));
    assert!(hits.iter().any(|h| h["language"] == "markdown"));
    assert!(hits.iter().all(|h| h["language"] != "rust"));
    let one = root.join("python/bisect.py");
    let hits = search(
        &mut s,
        "4",
        json!({"query": "insort", "limit": 20, "filter": {"pathPrefix": one}}),
    );
    assert!(!hits.is_empty() && hits.iter().all(|h| h["path"] == one.to_str().unwrap()));
}

fn many_files(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("d{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.txt")),
            format!("file number {i} mentions token{i} and the shared word pangolin\n"),
        )
        .unwrap();
    }
}

#[test]
fn ingest_dir_reports_progress_then_answers() {
    let tmp = tempfile::tempdir().unwrap();
    many_files(tmp.path(), 300);
    let mut s = Sidecar::spawn(&[]);
    s.call(
        1,
        "documents/ingestDir",
        json!({"root": tmp.path(), "_meta": {"progressToken": "ing"}}),
    );
    let mut last = -1.0;
    let mut count = 0;
    let result = loop {
        let v = s.recv();
        if v.get("id").is_some() {
            break v;
        }
        assert_eq!(v["params"]["progressToken"], "ing");
        assert_eq!(v["params"]["total"], 300.0);
        let p = v["params"]["progress"].as_f64().unwrap();
        assert!(p > last);
        last = p;
        count += 1;
    };
    assert!(count >= 2, "at least the start and the end");
    assert_eq!(last, 300.0);
    assert_eq!(result_of(&result)["files"], 300);
}

/// Files of the crash and cancel tests.
const VERSIONED_FILES: usize = 1000;

/// A word unique to file `i` and `version` (letters only: one term whatever the profile).
fn marker(version: &str, i: usize) -> String {
    let letters: String = i
        .to_string()
        .bytes()
        .map(|d| (b'a' + (d - b'0')) as char)
        .collect();
    format!("{version}x{letters}")
}

/// File `i` at `version`: multi-chunk (every line carries the file's marker, so every
/// chunk of it is found by that word); `lines` differs per version so that the two
/// versions have different chunk counts.
fn versioned_text(version: &str, i: usize, lines: usize) -> String {
    let m = marker(version, i);
    (0..lines)
        .map(|l| format!("line {l} of {m} says {version} things\n"))
        .collect()
}

fn write_versioned(root: &Path, version: &str, lines: usize) {
    for i in 0..VERSIONED_FILES {
        let dir = root.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.txt")),
            versioned_text(version, i, lines),
        )
        .unwrap();
    }
}

/// Chunks a text has when indexed alone.
fn chunks_of(s: &mut Sidecar, text: &str) -> u64 {
    let v = s.request(
        "ref",
        "documents/ingest",
        json!({"path": "/reference.txt", "content": text, "collection": "reference"}),
    );
    result_of(&v)["chunks"].as_u64().unwrap()
}

/// Every file of `root` is whole at exactly its old (`v1`) or its new (`v2`) content:
/// its chunks all carry one version's marker, with indexes 0..n for that version's
/// chunk count, and the collection holds nothing else. Returns how many are new.
fn assert_each_file_old_or_new(s: &mut Sidecar, root: &Path, counts: (u64, u64)) -> usize {
    let mut new = 0;
    let mut total = 0;
    for i in 0..VERSIONED_FILES {
        let path = root.join(format!("d{}/f{i}.txt", i % 10));
        let (old, fresh) = (marker("old", i), marker("new", i));
        let hits = search(
            s,
            "check",
            json!({"query": format!("{old} {fresh}"), "limit": 100,
                   "filter": {"pathPrefix": path}}),
        );
        let is_new = |h: &Value| h["snippet"].as_str().unwrap().contains(&fresh);
        let news = hits.iter().filter(|h| is_new(h)).count();
        assert!(
            news == 0 || news == hits.len(),
            "{}: chunks of both versions: {hits:?}",
            path.display()
        );
        let want = if news > 0 { counts.1 } else { counts.0 };
        let mut indexes: Vec<u64> = hits
            .iter()
            .map(|h| h["chunkIndex"].as_u64().unwrap())
            .collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..want).collect::<Vec<_>>(),
            "{}: not whole",
            path.display()
        );
        new += usize::from(news > 0);
        total += want;
    }
    let v = s.request("count", "collections/list", Value::Null);
    let default = result_of(&v)["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "default")
        .unwrap()
        .clone();
    assert_eq!(
        default["points"], total,
        "nothing but whole files: {default}"
    );
    assert_eq!(default["documents"], VERSIONED_FILES as u64, "{default}");
    new
}

/// Sends an ingest of `root` and waits until its progress passes `past` files.
fn ingest_until(s: &mut Sidecar, root: &Path, past: f64) {
    s.call(
        1,
        "documents/ingestDir",
        json!({"root": root, "_meta": {"progressToken": 1}}),
    );
    loop {
        let v = s.recv();
        assert!(v.get("id").is_none(), "finished too early: {v}");
        if v["params"]["progress"].as_f64().unwrap() > past {
            break;
        }
    }
}

#[test]
fn cancelling_an_ingest_leaves_whole_files_and_a_working_store() {
    let tmp = tempfile::tempdir().unwrap();
    write_versioned(tmp.path(), "old", 100);
    let mut s = Sidecar::spawn(&[]);
    let counts = (
        chunks_of(&mut s, &versioned_text("old", 0, 100)),
        chunks_of(&mut s, &versioned_text("new", 0, 70)),
    );
    assert!(
        counts.0 > 1 && counts.1 > 1 && counts.0 != counts.1,
        "{counts:?}"
    );
    let r = ingest_dir(&mut s, "0", json!({"root": tmp.path()}));
    assert_eq!(r["files"], VERSIONED_FILES);
    // Every file modified, then the re-ingest cancelled once under way.
    write_versioned(tmp.path(), "new", 70);
    ingest_until(&mut s, tmp.path(), 0.0);
    s.cancel(1);
    assert_error(&s.response(1), -32800, "cancelled");
    assert_eq!(
        result_of(&s.request(2, "health", Value::Null))["status"],
        "ok"
    );
    // The cancel is answered at once; the ingest stops at the next file and writes what
    // it reported done. A write to the same collection waits for it (one writer per
    // collection), so once this delete answers, the ingest has stopped.
    let v = s.request(3, "documents/delete", json!({"path": "/no/such/file"}));
    assert_eq!(result_of(&v)["deleted"], 0);
    let new = assert_each_file_old_or_new(&mut s, tmp.path(), counts);
    assert!(
        new < VERSIONED_FILES,
        "the cancel came too late to test anything"
    );
    let r = ingest_dir(&mut s, "4", json!({"root": tmp.path()}));
    assert_eq!(r["files"], VERSIONED_FILES);
    assert_eq!(
        assert_each_file_old_or_new(&mut s, tmp.path(), counts),
        VERSIONED_FILES
    );
}

#[test]
fn a_crash_in_the_middle_of_an_ingest_leaves_whole_files_that_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    write_versioned(tmp.path(), "old", 100);
    let data = tempfile::tempdir().unwrap();
    let mut s = Sidecar::spawn_in(data.path(), &[]);
    let counts = (
        chunks_of(&mut s, &versioned_text("old", 0, 100)),
        chunks_of(&mut s, &versioned_text("new", 0, 70)),
    );
    ingest_dir(&mut s, "0", json!({"root": tmp.path()}));
    write_versioned(tmp.path(), "new", 70);
    ingest_until(&mut s, tmp.path(), 50.0);
    s.signal(rustix::process::Signal::KILL);
    s.wait_exit();
    drop(s);
    let mut s = Sidecar::spawn_in(data.path(), &[]);
    let new = assert_each_file_old_or_new(&mut s, tmp.path(), counts);
    assert!(
        new < VERSIONED_FILES,
        "the kill came too late to test anything"
    );
    let r = ingest_dir(&mut s, "2", json!({"root": tmp.path()}));
    assert_eq!(r["files"], VERSIONED_FILES);
    assert_eq!(
        assert_each_file_old_or_new(&mut s, tmp.path(), counts),
        VERSIONED_FILES
    );
}

#[test]
fn terminal_commands_ingest_and_search() {
    let (_tmp, root) = corpus();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["ingest"])
        .arg(&root)
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10 files"), "{stdout}");
    let out = Command::new(bin())
        .args(["search", "dedent", "--limit", "3", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert!(first.contains("textwrap.py:"), "{stdout}");
    // `path:start-end  score`
    let loc = first.split_whitespace().next().unwrap();
    let range = loc.rsplit(':').next().unwrap();
    let (a, b) = range.split_once('-').unwrap();
    assert!(a.parse::<u64>().unwrap() <= b.parse::<u64>().unwrap());
}

#[test]
fn an_ingest_deadline_stops_it_and_deletes_take_whole_folders() {
    let tmp = tempfile::tempdir().unwrap();
    many_files(tmp.path(), 3000);
    let mut s = Sidecar::spawn(&[]);
    let v = s.request(
        1,
        "documents/ingestDir",
        json!({"root": tmp.path(), "_meta": {"timeoutMs": 150}}),
    );
    assert_error(&v, -32001, "timeout");
    assert_eq!(v["error"]["data"]["timeoutMs"], 150);
    // The store still works and the whole tree goes in afterwards.
    let r = ingest_dir(&mut s, "2", json!({"root": tmp.path()}));
    assert_eq!(r["files"], 3000);
    // Delete by folder: every document under it, and nothing else.
    let v = s.request(
        3,
        "documents/delete",
        json!({"path": tmp.path().join("d7")}),
    );
    assert_eq!(result_of(&v)["deleted"], 150, "{v}");
    let v = s.request(4, "collections/list", Value::Null);
    assert_eq!(result_of(&v)["collections"][0]["documents"], 2850);
    let hits = search(&mut s, "5", json!({"query": "token7"}));
    assert!(
        hits.iter()
            .all(|h| !h["path"].as_str().unwrap().ends_with("/f7.txt"))
    );
    let hits = search(&mut s, "6", json!({"query": "token8"}));
    assert_eq!(first_file(&hits), "f8.txt");
}
