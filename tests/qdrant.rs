//! `quarry serve --qdrant-url`: the same engine on a real Qdrant server and on a real
//! 3-node cluster, through the binary over its pipes. Skipped, saying so, where no
//! server binary exists (see `common::qdrant`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::qdrant::{Server, binary_or_skip, cluster};
use common::*;
use serde_json::{Value, json};

/// A fresh copy of the committed corpus (tests modify their copy).
fn corpus() -> (tempfile::TempDir, PathBuf) {
    fixture_copy("corpus")
}

/// `quarry serve` on the server at `url` (own data folder, no gRPC endpoint).
fn serve_on(url: &str, extra: &[&str]) -> Sidecar {
    let mut args = vec!["--no-grpc", "--qdrant-url", url, "--qdrant-prefix", "t_"];
    args.extend_from_slice(extra);
    Sidecar::spawn(&args)
}

fn ingest(s: &mut Sidecar, root: &Path) -> Value {
    let v = s.request(
        "ingest",
        "documents/ingestDir",
        json!({"root": root, "_meta": {"timeoutMs": 120000}}),
    );
    result_of(&v).clone()
}

/// `(path, startLine)` of the top hits of `query`.
fn top(s: &mut Sidecar, query: &str, limit: usize) -> Vec<(String, u64)> {
    let v = s.request("q", "search/query", json!({"query": query, "limit": limit}));
    result_of(&v)["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap().to_owned(),
                h["startLine"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

const QUERIES: &[&str] = &[
    "split a shell command line",
    "heap push pop",
    "wrap text to a width",
    "bisect insort",
    "hsv to rgb",
    "fnmatch translate pattern",
    "memchr",
    "serde_json from_str",
    "integer to string",
    "dedent",
];

fn documents(s: &mut Sidecar) -> u64 {
    let v = s.request("l", "collections/list", json!({}));
    result_of(&v)["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "default")
        .map_or(0, |c| c["documents"].as_u64().unwrap())
}

#[test]
fn a_qdrant_server_answers_like_the_embedded_store() {
    let Some(bin) = binary_or_skip("a_qdrant_server_answers_like_the_embedded_store") else {
        return;
    };
    let server = Server::start(&bin);
    let (_tmp, root) = corpus();
    let mut remote = serve_on(&server.url(), &[]);
    let mut local = Sidecar::spawn(&["--no-grpc"]);
    let r = ingest(&mut remote, &root);
    let l = ingest(&mut local, &root);
    assert_eq!(r["files"], l["files"], "{r} {l}");
    assert_eq!(r["chunks"], l["chunks"], "{r} {l}");
    // The same ranking: the same sparse vectors, IDF applied by the server.
    for q in QUERIES {
        assert_eq!(top(&mut remote, q, 10), top(&mut local, q, 10), "{q}");
    }
    // Health names no owner: no process owns an index on a server.
    let h = remote.request("h", "health", Value::Null);
    assert!(result_of(&h).get("role").is_none_or(Value::is_null), "{h}");

    // Idempotent re-ingest; a change and a deletion are followed.
    let again = ingest(&mut remote, &root);
    assert_eq!(again["unchanged"], r["files"], "{again}");
    assert_eq!(again["chunks"], 0, "{again}");
    std::fs::write(
        root.join("python/heapq.py"),
        "def zebra_stripes():\n    return 'zebra'\n",
    )
    .unwrap();
    std::fs::remove_file(root.join("python/bisect.py")).unwrap();
    let changed = ingest(&mut remote, &root);
    let files = r["files"].as_u64().unwrap();
    assert_eq!(changed["unchanged"], files - 2, "{changed}");
    assert_eq!(changed["removed"], 1, "{changed}");
    let hits = top(&mut remote, "zebra stripes", 10);
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].0.ends_with("heapq.py"));
    assert!(top(&mut remote, "heappush heappop", 10).is_empty());
    assert!(top(&mut remote, "insort", 10).is_empty());
    assert_eq!(documents(&mut remote), files - 1);

    // A watch on the server's store.
    let watched = tempfile::tempdir().unwrap();
    let v = remote.request(
        "w",
        "watch/start",
        json!({"root": watched.path(), "collection": "watched", "debounceMs": 50}),
    );
    result_of(&v);
    std::fs::write(
        watched.path().join("new.txt"),
        "the okapi hides in the forest\n",
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let v = remote.request(
            "s",
            "search/query",
            json!({"query": "okapi", "collection": "watched"}),
        );
        if result_of(&v)["hits"]
            .as_array()
            .is_some_and(|h| h.len() == 1)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watch never indexed the file"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deletes: a document, then the collection.
    let v = remote.request(
        "d",
        "documents/delete",
        json!({"path": root.join("python/shlex.py")}),
    );
    result_of(&v);
    assert!(
        top(&mut remote, "shlex split", 10)
            .iter()
            .all(|(p, _)| !p.ends_with("shlex.py"))
    );
    let v = remote.request("dc", "collections/delete", json!({"name": "watched"}));
    result_of(&v);
    // Another process on the same server sees the same index.
    let mut other = serve_on(&server.url(), &[]);
    assert_eq!(documents(&mut other), files - 2);
}

/// A word of its own for file `i` (letters only: digits are not terms).
fn name(i: usize) -> String {
    let mut s = String::from("kw");
    let mut n = i;
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return s;
        }
    }
}

#[test]
fn two_processes_ingesting_one_folder_at_once_leave_one_whole_index() {
    let Some(bin) = binary_or_skip("two_processes_ingesting_one_folder_at_once") else {
        return;
    };
    let server = Server::start(&bin);
    let tree = tempfile::tempdir().unwrap();
    for i in 0..400 {
        std::fs::write(
            tree.path().join(format!("f{i}.txt")),
            format!("the lynx {} stalks\n", name(i)).repeat(1 + i % 7),
        )
        .unwrap();
    }
    let mut a = serve_on(&server.url(), &[]);
    let mut b = serve_on(&server.url(), &[]);
    // At once, several rounds, with the files changing between rounds: every document
    // stays whole, once.
    for round in 0..3 {
        for s in [&mut a, &mut b] {
            s.send(
                &json!({"jsonrpc": "2.0", "id": "i", "method": "documents/ingestDir",
                "params": {"root": tree.path(), "_meta": {"timeoutMs": 120000}}}),
            );
        }
        result_of(&a.response("i"));
        result_of(&b.response("i"));
        assert_eq!(documents(&mut a), 400, "round {round}");
        for i in (0..400).step_by(37) {
            let q = name(i);
            let hits = top(&mut b, &q, 1);
            assert!(hits[0].0.ends_with(&format!("/f{i}.txt")), "{q}: {hits:?}");
        }
        for i in (0..400).step_by(3) {
            std::fs::write(
                tree.path().join(format!("f{i}.txt")),
                format!("the lynx {} stalks in round {round}\n", name(i)),
            )
            .unwrap();
        }
    }
    // Chunks: exactly those of the files as they are (no version left twice, none lost).
    let v = a.request(
        "c",
        "documents/ingestDir",
        json!({"root": tree.path(), "_meta": {"timeoutMs": 120000}}),
    );
    let changed = (0..400).step_by(3).count() as u64;
    assert_eq!(result_of(&v)["unchanged"], 400 - changed, "{v}");
    assert_eq!(result_of(&v)["chunks"], changed, "{v}");
    let v = a.request("l", "collections/list", json!({}));
    let c = &result_of(&v)["collections"][0];
    assert_eq!(c["documents"], 400, "{v}");
    assert_eq!(
        c["points"], 400,
        "one chunk per file, one version each: {v}"
    );
}

#[test]
fn a_server_that_is_down_is_reported_unavailable_until_it_returns() {
    let Some(bin) = binary_or_skip("a_server_that_is_down_is_reported_unavailable") else {
        return;
    };
    let mut server = Server::start(&bin);
    server.kill();
    // `quarry serve` starts anyway; engine calls name the reason.
    let mut s = serve_on(&server.url(), &["--qdrant-retry-ms", "200"]);
    let v = s.request("h", "health", Value::Null);
    result_of(&v);
    let v = s.request("l", "collections/list", json!({}));
    assert_error(&v, -32013, "storage");
    assert_eq!(v["error"]["data"]["reason"], "unavailable", "{v}");
    assert_eq!(v["error"]["data"]["retryable"], true, "{v}");
    server.restart();
    let v = s.request("l", "collections/list", json!({}));
    result_of(&v);
    // Down again after it opened: the same answer, then service again.
    server.kill();
    let v = s.request("s", "search/query", json!({"query": "heron"}));
    assert_error(&v, -32013, "storage");
    assert_eq!(v["error"]["data"]["reason"], "unavailable", "{v}");
    server.restart();
    let v = s.request("l2", "collections/list", json!({}));
    result_of(&v);
}

#[test]
fn a_wrong_api_key_is_refused_naming_the_flag() {
    let Some(bin) = binary_or_skip("a_wrong_api_key_is_refused_naming_the_flag") else {
        return;
    };
    let server = Server::start_with_key(&bin, "k3y");
    let mut s = serve_on(&server.url(), &["--qdrant-api-key", "wrong"]);
    let v = s.request("l", "collections/list", json!({}));
    assert_error(&v, -32013, "storage");
    assert_eq!(v["error"]["data"]["reason"], "unauthorized", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--qdrant-api-key"), "{message}");
    let mut s = serve_on(&server.url(), &["--qdrant-api-key", "k3y"]);
    let v = s.request("l", "collections/list", json!({}));
    result_of(&v);
}

#[test]
fn an_ingest_survives_a_restart_of_the_server_and_loses_nothing() {
    let Some(bin) = binary_or_skip("an_ingest_survives_a_restart_of_the_server") else {
        return;
    };
    let mut server = Server::start(&bin);
    let tree = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        std::fs::write(
            tree.path().join(format!("f{i}.txt")),
            format!("the ibex number {i} climbs\n"),
        )
        .unwrap();
    }
    let mut s = serve_on(&server.url(), &[]);
    s.send(
        &json!({"jsonrpc": "2.0", "id": "i", "method": "documents/ingestDir",
        "params": {"root": tree.path(), "_meta": {"progressToken": "p", "timeoutMs": 120000}}}),
    );
    // Once the ingest is under way, the server is killed and started again.
    loop {
        let m = s.recv();
        if m["method"] == "notifications/progress" {
            break;
        }
        assert_ne!(m["id"], "i", "finished before the restart: {m}");
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    let v = s.response("i");
    assert_eq!(result_of(&v)["files"], 3000, "{v}");
    // The restart fell inside the ingest: its writes were retried.
    assert!(
        s.stderr_text().contains("retrying a Qdrant call"),
        "no write was retried"
    );
    assert_eq!(documents(&mut s), 3000);
    let v = s.request("n", "search/query", json!({"query": "ibex number 2999"}));
    assert!(
        result_of(&v)["hits"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/f2999.txt")
    );
}

#[test]
fn a_three_node_cluster_answers_through_the_loss_of_a_node() {
    let Some(bin) = binary_or_skip("a_three_node_cluster_answers_through_the_loss_of_a_node")
    else {
        return;
    };
    let mut nodes = cluster(&bin, 3);
    let (_tmp, root) = corpus();
    let url = nodes[0].url();
    let mut s = serve_on(
        &url,
        &[
            "--qdrant-shards",
            "3",
            "--qdrant-replicas",
            "2",
            "--qdrant-write-consistency",
            "1",
        ],
    );
    let r = ingest(&mut s, &root);
    let files = r["files"].as_u64().unwrap();
    // The collection is laid out as asked.
    let (_, body) = nodes[0].get("/collections/t_default").unwrap();
    let info: Value = serde_json::from_str(&body).unwrap();
    let params = &info["result"]["config"]["params"];
    assert_eq!(params["shard_number"], 3, "{info}");
    assert_eq!(params["replication_factor"], 2, "{info}");
    let before: Vec<_> = QUERIES.iter().map(|q| top(&mut s, q, 10)).collect();
    assert!(before.iter().any(|h| !h.is_empty()));

    // A node other than the one Quarry talks to is killed: every search answers with
    // the same hits, and ingest goes on.
    nodes[2].kill();
    for (q, hits) in QUERIES.iter().zip(&before) {
        assert_eq!(&top(&mut s, q, 10), hits, "{q}");
    }
    std::fs::write(root.join("docs/new.md"), "# Quokka\n\nThe quokka smiles.\n").unwrap();
    let r = ingest(&mut s, &root);
    assert_eq!(r["unchanged"], files, "{r}");
    assert_eq!(r["chunks"], 1, "{r}");
    assert_eq!(top(&mut s, "quokka", 10).len(), 1);
    assert_eq!(documents(&mut s), files + 1);

    // The node returns and catches up: every replica active again.
    nodes[2].restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = nodes[0]
            .get("/collections/t_default/cluster")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .map(|v| {
                let r = &v["result"];
                let all: Vec<&Value> = r["local_shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(r["remote_shards"].as_array().into_iter().flatten())
                    .collect();
                all.len() == 6 && all.iter().all(|s| s["state"] == "Active")
            })
            .unwrap_or(false);
        if active {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never caught up: {:?}",
            nodes[0].get("/collections/t_default/cluster")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Served by the returned node too: Quarry on node 3 sees the same index.
    let mut on_node3 = serve_on(&nodes[2].url(), &[]);
    assert_eq!(documents(&mut on_node3), files + 1);
    for q in QUERIES {
        assert_eq!(top(&mut on_node3, q, 10), top(&mut s, q, 10), "{q}");
    }
}
