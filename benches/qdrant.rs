//! The store backends on a real corpus, in one run: the embedded store, one Qdrant
//! server and a 3-node Qdrant cluster (3 shards, 2 replicas). For each: ingest time,
//! throughput and Quarry's peak RSS (each ingest in a fresh child process), search
//! p50/p99 and the top-10 of every query, compared across backends. Then the baseline:
//! the same points (Quarry's own sparse vectors and payloads, read back from the server)
//! upserted by the official Python `qdrant-client` into the same server, as a user's
//! program would.
//!
//! `cargo bench --bench qdrant [-- CORPUS]`; default corpus: the standard library of the
//! machine's `python3` without `site-packages` and `__pycache__`. The server comes from
//! `$QUARRY_TEST_QDRANT` or `../shared/bin/qdrant-server`; the Python baseline needs
//! `qdrant-client` in `$QUARRY_BENCH_PYTHON` (default: `scripts/test.sh`'s virtualenv).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarry::engine::{Engine, EngineConfig, IngestDirOptions, SearchRequest};
use quarry::store::Store;
use quarry::store::edge::EdgeStore;
use quarry::store::qdrant::{QdrantOptions, QdrantStore};
use tokio_util::sync::CancellationToken;

#[path = "common/judged.rs"]
mod judged;
#[path = "../tests/common/qdrant.rs"]
mod server;
use judged::{JUDGED, pct, peak_rss_mb, rank_of, stdlib};

/// Queries timed and compared: the judged ones and a few identifiers.
fn queries() -> Vec<&'static str> {
    let mut q: Vec<&str> = JUDGED.iter().map(|(q, _)| *q).collect();
    q.extend([
        "urlsplit",
        "namedtuple",
        "OrderedDict move_to_end",
        "heappush",
        "TemporaryDirectory cleanup",
        "getaddrinfo",
        "json dumps indent",
        "ThreadPoolExecutor shutdown",
        "re compile flags",
        "Path glob",
    ]);
    q
}

fn options() -> IngestDirOptions {
    IngestDirOptions {
        include: vec![],
        exclude: vec!["site-packages/".into(), "__pycache__/".into()],
    }
}

fn store(backend: &str) -> Arc<dyn Store> {
    match backend.strip_prefix("qdrant=") {
        Some(spec) => {
            // url[,shards,replicas]
            let mut parts = spec.split(',');
            let mut o = QdrantOptions::new(parts.next().unwrap_or_default());
            o.prefix = "bench_".into();
            o.shards = parts.next().and_then(|s| s.parse().ok());
            o.replicas = parts.next().and_then(|s| s.parse().ok());
            Arc::new(QdrantStore::connect(o).expect("connect"))
        }
        None => Arc::new(EdgeStore::open(Path::new(backend)).expect("store")),
    }
}

/// In a child: ingest, then time every query 20 times; print one JSON line.
fn child(corpus: &Path, backend: &str) {
    let engine = Engine::new(store(backend), EngineConfig::default()).expect("engine");
    let t = Instant::now();
    let r = engine
        .ingest_dir(None, corpus, &options(), &CancellationToken::new(), &|_| {})
        .expect("ingest");
    let secs = t.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    let mut times = Vec::new();
    let mut tops = Vec::new();
    for q in queries() {
        let request = SearchRequest {
            query: q.to_owned(),
            limit: Some(10),
            ..SearchRequest::default()
        };
        let r = engine.search(&request).expect("search");
        tops.push(
            r.hits
                .iter()
                .map(|h| format!("{}:{}", h.path, h.start_line))
                .collect::<Vec<_>>(),
        );
        for _ in 0..20 {
            let t = Instant::now();
            engine.search(&request).expect("search");
            times.push(t.elapsed());
        }
    }
    times.sort();
    println!(
        "{}",
        serde_json::json!({
            "files": r.files, "chunks": r.chunks, "secs": secs, "rss": rss,
            "p50": pct(&times, 0.5), "p99": pct(&times, 0.99), "tops": tops,
        })
    );
}

fn run_child(corpus: &Path, backend: &str) -> serde_json::Value {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .args(["--child", &corpus.to_string_lossy(), backend])
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).expect("child output")
}

/// MRR@10 of the judged queries (the first `JUDGED.len()` of [`queries`]), by file.
fn mrr(r: &serde_json::Value) -> f64 {
    let tops = r["tops"].as_array().unwrap();
    let mut sum = 0.0;
    for ((_, want), top) in JUDGED.iter().zip(tops) {
        let mut files: Vec<String> = Vec::new();
        for hit in top.as_array().unwrap() {
            let path = hit.as_str().unwrap().rsplit_once(':').unwrap().0.to_owned();
            if !files.contains(&path) {
                files.push(path);
            }
        }
        if let Some(rank) = rank_of(&files, want) {
            sum += 1.0 / (rank as f64 + 1.0);
        }
    }
    sum / JUDGED.len() as f64
}

/// Share of queries whose top-10 equals the reference's.
fn agreement(a: &serde_json::Value, reference: &serde_json::Value) -> f64 {
    let (a, b) = (
        a["tops"].as_array().unwrap(),
        reference["tops"].as_array().unwrap(),
    );
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("QUARRY_BENCH_PYTHON").map(PathBuf::from),
        Some(
            PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
                .join("py-venv/bin/python"),
        ),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import qdrant_client"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(Path::new(&args[2]), &args[3]);
        return;
    }
    let corpus = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or_else(stdlib, PathBuf::from);
    let bin = match server::binary() {
        Ok(b) => b,
        Err(why) => {
            println!("qdrant bench skipped: {why}");
            return;
        }
    };
    println!("corpus: {}", corpus.display());

    let data = tempfile::tempdir().expect("tmp");
    let embedded = run_child(&corpus, &data.path().to_string_lossy());
    let single = server::Server::start(&bin);
    let on_server = run_child(&corpus, &format!("qdrant={}", single.url()));
    let nodes = server::cluster(&bin, 3);
    let on_cluster = run_child(&corpus, &format!("qdrant={},3,2", nodes[0].url()));
    drop(nodes);
    // One shard on each of 3 nodes (replication 3): the server's IDF is per shard, so
    // only a collection of one shard ranks exactly like one store.
    let nodes = server::cluster(&bin, 3);
    let replicated = run_child(&corpus, &format!("qdrant={},1,3", nodes[0].url()));
    drop(nodes);

    println!();
    println!(
        "| backend | files | chunks | ingest s | chunks/s | peak RSS MB | search p50 ms | p99 ms | same top-10 as embedded | MRR@10 (judged) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [
        ("embedded (qdrant-edge)", &embedded),
        ("one Qdrant server", &on_server),
        ("3-node cluster (3 shards × 2 replicas)", &on_cluster),
        ("3-node cluster (1 shard × 3 replicas)", &replicated),
    ] {
        let secs = r["secs"].as_f64().unwrap();
        let chunks = r["chunks"].as_u64().unwrap();
        println!(
            "| {name} | {} | {chunks} | {secs:.1} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} % | {:.3} |",
            r["files"],
            chunks as f64 / secs,
            r["rss"].as_f64().unwrap(),
            r["p50"].as_f64().unwrap(),
            r["p99"].as_f64().unwrap(),
            agreement(r, &embedded) * 100.0,
            mrr(r),
        );
    }
    println!(
        "\n({} queries; search timed 20 times each in the ingesting process)",
        queries().len()
    );

    // The baseline: the same points through the Python client into the same server.
    let Some(py) = python() else {
        println!(
            "\nPython baseline skipped: no `qdrant-client` (run scripts/test.sh, or set QUARRY_BENCH_PYTHON)"
        );
        return;
    };
    let export = data.path().join("points.jsonl");
    export_points(&single.url(), &export);
    // The same payload indexes as Quarry's collection.
    let schema = single
        .get("/collections/bench_default")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|v| {
            v["result"]["payload_schema"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v["data_type"].clone()))
                        .collect::<serde_json::Map<_, _>>()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/qdrant_baseline.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&export)
        .arg(format!("http://127.0.0.1:{}", single.http_port))
        .arg(serde_json::Value::Object(schema).to_string())
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let base: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or_default()).expect("baseline output");
    let py_rate = base["points"].as_f64().unwrap() / base["secs"].as_f64().unwrap();
    let quarry_rate = on_server["chunks"].as_f64().unwrap() / on_server["secs"].as_f64().unwrap();
    println!();
    println!("| ingest into one server | points | s | points/s |");
    println!("|---|---|---|---|");
    println!(
        "| Python `qdrant-client` {} (REST, `upsert` of {} points, `wait=True`, the same {} payload indexes; points prepared beforehand: upload only) | {} | {:.1} | {py_rate:.0} |",
        base["version"].as_str().unwrap_or("?"),
        base["batch"],
        base["indexes"],
        base["points"],
        base["secs"].as_f64().unwrap(),
    );
    println!(
        "| Quarry (walk, read, chunk, BM25 and upload) | {} | {:.1} | {quarry_rate:.0} |",
        on_server["chunks"],
        on_server["secs"].as_f64().unwrap(),
    );
    println!(
        "\nQuarry / Python throughput: {:.2}×",
        quarry_rate / py_rate
    );
}

/// Reads every point of Quarry's collection on the server (sparse vector and payload)
/// into JSON lines for the Python baseline.
fn export_points(url: &str, to: &Path) {
    use qdrant_client::qdrant::{ScrollPointsBuilder, vector_output, vectors_output};
    use std::io::Write;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = qdrant_client::Qdrant::from_url(url)
        .skip_compatibility_check()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut file = std::io::BufWriter::new(std::fs::File::create(to).expect("export"));
    let mut offset = None;
    loop {
        let mut b = ScrollPointsBuilder::new("bench_default")
            .limit(1000)
            .with_payload(true)
            .with_vectors(true);
        if let Some(o) = offset.take() {
            b = b.offset(o);
        }
        let page = rt.block_on(client.scroll(b)).expect("scroll");
        for p in page.result {
            let Some(id) = p.id.as_ref().and_then(|i| match &i.point_id_options {
                Some(qdrant_client::qdrant::point_id::PointIdOptions::Num(n)) => Some(*n),
                _ => None,
            }) else {
                continue;
            };
            let sparse = match p.vectors.and_then(|v| v.vectors_options) {
                Some(vectors_output::VectorsOptions::Vectors(mut named)) => {
                    match named.vectors.remove("sparse").map(|v| v.into_vector()) {
                        Some(vector_output::Vector::Sparse(s)) => s,
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let payload: serde_json::Map<String, serde_json::Value> =
                qdrant_client::Payload::from(p.payload).into();
            let line = serde_json::json!({
                "id": id,
                "indices": sparse.indices,
                "values": sparse.values,
                "payload": payload,
            });
            writeln!(file, "{line}").expect("write");
        }
        match page.next_page_offset {
            Some(o) => offset = Some(o),
            None => break,
        }
    }
}
