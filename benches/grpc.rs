//! gRPC benchmark (GRPC.md §1–4): a no-op (`grpc.health.v1.Health/Check`) and `Search`
//! over the Unix socket and loopback TCP of a real `quarry daemon`, sequential (p50/p99)
//! and 64 concurrent (calls/s), against a bare tonic server answering the same health
//! check in the same run (the floor) and against `ping` / `search/query` over stdio;
//! `BulkIndex` of standard-library files sent as content against `documents/ingestDir`
//! of the same files; the daemon's idle RSS.
//!
//! `cargo bench --bench grpc` (`QUARRY_BENCH_FILES=N`: files for the ingest part,
//! default 1000: the first indexable `.py` files of the standard library in path order).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quarry::grpc::proto::quarry_client::QuarryClient;
use quarry::grpc::proto::{self, ingest_dir_update};
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[path = "common/stdlib.rs"]
mod stdlib;

const BIN: &str = env!("CARGO_BIN_EXE_quarry");
const SEQUENTIAL: usize = 2000;
const CONCURRENT_CALLS: usize = 6400;
const WINDOW: usize = 64;

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i].as_secs_f64() * 1e6
}

async fn unix_channel(socket: &Path) -> Channel {
    quarry::grpc::endpoint::connect(socket).await.unwrap()
}

/// Waits for `path`; a socket until something listens on it (the file appears at
/// bind(2), a moment before listen(2)).
fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = |p: &Path| {
        p.exists()
            && (!quarry::grpc::endpoint::is_socket(p)
                || std::os::unix::net::UnixStream::connect(p).is_ok())
    };
    while !ready(path) {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sequential p50/p99 (µs) and 64-concurrent calls/s of `call`.
async fn measure<F, Fut>(call: F) -> (f64, f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    for _ in 0..200 {
        call().await;
    }
    let mut lat = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        call().await;
        lat.push(t.elapsed());
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WINDOW {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..CONCURRENT_CALLS / WINDOW {
                call().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = CONCURRENT_CALLS as f64 / t.elapsed().as_secs_f64();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), rate)
}

/// A `quarry serve` over pipes: sequential p50/p99 of `line` and window-64 calls/s.
fn stdio(data: &Path, request: Value) -> (f64, f64, f64) {
    let mut child = Command::new(BIN)
        .args(["serve", "--no-grpc"])
        .env("QUARRY_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    // Every request its own id: ids still in flight may not be reused (PROTOCOL.md §2).
    let mut id = 0u64;
    let mut roundtrip = |n: usize| {
        for _ in 0..n {
            id += 1;
            let mut r = request.clone();
            r["id"] = json!(id);
            let mut text = r.to_string();
            text.push('\n');
            input.write_all(text.as_bytes()).unwrap();
        }
        input.flush().unwrap();
        for _ in 0..n {
            line.clear();
            output.read_line(&mut line).unwrap();
            assert!(!line.contains("\"error\""), "{line}");
        }
    };
    roundtrip(200);
    let mut lat = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        roundtrip(1);
        lat.push(t.elapsed());
    }
    let t = Instant::now();
    for _ in 0..CONCURRENT_CALLS / WINDOW {
        roundtrip(WINDOW);
    }
    let rate = CONCURRENT_CALLS as f64 / t.elapsed().as_secs_f64();
    drop(input);
    let _ = child.wait();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99), rate)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn row(name: &str, (p50, p99, rate): (f64, f64, f64), floor: Option<(f64, f64, f64)>) {
    let ratio = floor.map_or(String::new(), |f| format!("{:.2}×", p50 / f.0));
    println!("| {name} | {p50:.0} / {p99:.0} µs | {ratio} | {rate:.0} calls/s |");
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let run = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");

    // The floor: a bare tonic server answering the same health check on a Unix socket.
    let floor_socket = run.path().join("floor.sock");
    let listener = tokio::net::UnixListener::bind(&floor_socket).unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );

    let daemon = Killed(
        Command::new(BIN)
            .args(["daemon", "--grpc-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("XDG_RUNTIME_DIR", run.path())
            .env("QUARRY_TOKEN", "bench")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let socket = run.path().join("quarry").join(format!("{pid}.sock"));
    let entry = run
        .path()
        .join("quarry/instances")
        .join(format!("{pid}.json"));
    wait_for(&socket);
    wait_for(&entry);
    std::thread::sleep(Duration::from_millis(300));
    let idle_rss = rss_kb(pid);
    let registry: Value = serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let tcp = registry["tcp"].as_str().unwrap().to_owned();

    let auth = |mut r: tonic::Request<proto::SearchRequest>| {
        r.metadata_mut()
            .insert("authorization", "Bearer bench".parse().unwrap());
        r
    };
    let unix = unix_channel(&socket).await;
    let mut q = QuarryClient::new(unix.clone());
    let mut ingest = tonic::Request::new(proto::IngestDirRequest {
        root: corpus.display().to_string(),
        ..Default::default()
    });
    ingest
        .metadata_mut()
        .insert("authorization", "Bearer bench".parse().unwrap());
    let mut s = q.ingest_dir(ingest).await.unwrap().into_inner();
    while s.message().await.unwrap().is_some() {}
    let search = proto::SearchRequest {
        query: "split a string using shell-like syntax".into(),
        limit: 10,
        ..Default::default()
    };

    let floor = unix_channel(&floor_socket).await;
    let health_call = |ch: Channel| {
        move || {
            let mut h = HealthClient::new(ch.clone());
            async move {
                h.check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap();
            }
        }
    };
    let search_call = |ch: Channel| {
        let search = search.clone();
        move || {
            let mut q = QuarryClient::new(ch.clone());
            let r = auth(tonic::Request::new(search.clone()));
            async move {
                q.search(r).await.unwrap();
            }
        }
    };
    let tcp_ch = Endpoint::from_shared(format!("http://{tcp}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap();

    println!(
        "Quarry gRPC benchmark ({SEQUENTIAL} sequential, {CONCURRENT_CALLS} at {WINDOW} in flight)\n"
    );
    println!("| call | p50 / p99 | p50 / floor | 64 in flight |\n|---|---|---|---|");
    let f = measure(health_call(floor)).await;
    row("floor: bare tonic `Health/Check`, Unix socket", f, None);
    row(
        "quarry `Health/Check` (no-op through the middleware), Unix socket",
        measure(health_call(unix.clone())).await,
        Some(f),
    );
    row(
        "quarry `Health/Check`, loopback TCP",
        measure(health_call(tcp_ch.clone())).await,
        Some(f),
    );
    row(
        "quarry `Search`, Unix socket",
        measure(search_call(unix.clone())).await,
        Some(f),
    );
    row(
        "quarry `Search`, loopback TCP",
        measure(search_call(tcp_ch)).await,
        Some(f),
    );
    let stdio_data = tempfile::tempdir().unwrap();
    row(
        "stdio `ping` (pipes)",
        stdio(
            stdio_data.path(),
            json!({"jsonrpc":"2.0","id":1,"method":"ping"}),
        ),
        Some(f),
    );
    {
        // The same corpus for stdio search.
        let mut child = Command::new(BIN)
            .args(["ingest"])
            .arg(&corpus)
            .arg("--data-dir")
            .arg(stdio_data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.wait().unwrap();
    }
    row(
        "stdio `search/query` (pipes)",
        stdio(
            stdio_data.path(),
            json!({"jsonrpc":"2.0","id":1,"method":"search/query",
                   "params":{"query":"split a string using shell-like syntax","limit":10}}),
        ),
        Some(f),
    );

    // BulkIndex (content sent) against ingestDir (read by the server), same files.
    let n: usize = std::env::var("QUARRY_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let copy = tempfile::tempdir().unwrap();
    let mut bytes = 0u64;
    let mut requests = Vec::new();
    for (name, content) in stdlib::flat_texts(n) {
        bytes += content.len() as u64;
        std::fs::write(copy.path().join(&name), &content).unwrap();
        requests.push(proto::IndexFileRequest {
            path: format!("/bench/{name}"),
            collection: "bulk".into(),
            content: Some(content),
            metadata: None,
        });
    }
    // A-B-B-A (BulkIndex, IngestDir, IngestDir, BulkIndex), each into a fresh
    // collection: warm-up and order weigh on both sides alike; the means are reported.
    let mut bulk_secs = 0.0;
    let mut dir_secs = 0.0;
    for (round, bulk_first) in [(1, true), (2, false)] {
        for bulk in [bulk_first, !bulk_first] {
            let t = Instant::now();
            if bulk {
                let files: Vec<_> = requests
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        r.collection = format!("bulk{round}");
                        r
                    })
                    .collect();
                let mut call = tonic::Request::new(tokio_stream::iter(files));
                call.metadata_mut()
                    .insert("authorization", "Bearer bench".parse().unwrap());
                let r = q.bulk_index(call).await.unwrap().into_inner();
                assert_eq!(r.failed, 0, "{:?}", r.errors);
                assert_eq!(r.indexed as usize, requests.len());
                bulk_secs += t.elapsed().as_secs_f64() / 2.0;
            } else {
                let mut ingest = tonic::Request::new(proto::IngestDirRequest {
                    root: copy.path().display().to_string(),
                    collection: format!("dir{round}"),
                    ..Default::default()
                });
                ingest
                    .metadata_mut()
                    .insert("authorization", "Bearer bench".parse().unwrap());
                let mut s = q.ingest_dir(ingest).await.unwrap().into_inner();
                while let Some(u) = s.message().await.unwrap() {
                    if let Some(ingest_dir_update::Update::Result(r)) = u.update {
                        assert_eq!(r.files as usize, requests.len());
                    }
                }
                dir_secs += t.elapsed().as_secs_f64() / 2.0;
            }
        }
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "\n| ingest of {} stdlib files ({mb:.1} MB), mean of 2 (A-B-B-A) | seconds | MB/s |\n|---|---|---|",
        requests.len()
    );
    println!(
        "| `BulkIndex` (content sent) | {bulk_secs:.2} | {:.2} |",
        mb / bulk_secs
    );
    println!(
        "| `IngestDir` (read by the server) | {dir_secs:.2} | {:.2} |",
        mb / dir_secs
    );
    println!(
        "| BulkIndex / IngestDir speed | {:.2}× | (target ≥ 0.8×) |",
        dir_secs / bulk_secs
    );
    println!(
        "\nidle RSS of `quarry daemon` after start: {:.1} MB (target ≤ 20 MB)",
        idle_rss as f64 / 1024.0
    );
}
