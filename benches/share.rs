//! Shared data folder benchmark (GRPC.md §6), real `quarry serve` processes on one folder:
//!
//! - `search/query` p50/p99 through a follower against the owner directly, in
//!   alternating blocks of the same queries (same run, same index);
//! - takeover: `kill -9` of the owner to the first answered engine call on a follower,
//!   p50/p99 over a chain of kills (each new owner is the next one killed);
//! - `documents/ingestDir` of standard-library files through a follower against the
//!   owner, A-B-B-A into fresh collections.
//!
//! `cargo bench --bench share` (`QUARRY_BENCH_KILLS=N`, default 20;
//! `QUARRY_BENCH_FILES=N`, default 600).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "common/stdlib.rs"]
mod stdlib;

const BIN: &str = env!("CARGO_BIN_EXE_quarry");

/// One `quarry serve` on a data folder, driven line by line.
struct Host {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next: u64,
}

impl Host {
    fn start(data: &Path, run: &Path) -> Host {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("QUARRY_DATA_DIR", data)
            .env("XDG_RUNTIME_DIR", run)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut ready = String::new();
        output.read_line(&mut ready).unwrap();
        assert!(ready.contains("sidecar/ready"), "{ready}");
        Host {
            child,
            input,
            output,
            next: 0,
        }
    }

    /// Sends one request and reads until its response (notifications skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        // JSON-RPC 2.0 §4.2: `params`, when present, is structured.
        if !params.is_null() {
            request["params"] = params;
        }
        let mut text = request.to_string();
        text.push('\n');
        self.input.write_all(text.as_bytes()).unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.output.read_line(&mut line).unwrap() > 0, "host gone");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    fn role(&mut self) -> String {
        self.call("health", Value::Null)["result"]["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i].as_secs_f64() * 1e6
}

/// The first `n` indexable `.py` files of the stdlib, copied flat into `into`; their
/// bytes.
fn corpus(n: usize, into: &Path) -> u64 {
    let mut bytes = 0;
    for (name, content) in stdlib::flat_texts(n) {
        bytes += content.len() as u64;
        std::fs::write(into.join(name), &content).unwrap();
    }
    bytes
}

const QUERIES: [&str; 8] = [
    "split a string using shell-like syntax",
    "parse command line options",
    "read a zip archive",
    "json decoder error",
    "thread pool executor",
    "http request headers",
    "temporary directory cleanup",
    "regular expression compile flags",
];

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (kills, n) = (
        env("QUARRY_BENCH_KILLS", 20),
        env("QUARRY_BENCH_FILES", 600),
    );
    let run = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let bytes = corpus(n, files.path());
    let mb = bytes as f64 / 1e6;
    println!("Quarry shared-folder benchmark ({n} stdlib files, {mb:.1} MB)\n");

    let mut owner = Host::start(data.path(), run.path());
    assert_eq!(owner.role(), "owner");
    let mut follower = Host::start(data.path(), run.path());
    assert_eq!(follower.role(), "follower");

    // Ingest through each, A-B-B-A, fresh collections.
    let mut secs = [0.0f64; 2];
    for (round, order) in [[0usize, 1], [1, 0]].into_iter().enumerate() {
        for who in order {
            let host = if who == 0 { &mut owner } else { &mut follower };
            let t = Instant::now();
            let v = host.call(
                "documents/ingestDir",
                json!({"root": files.path(), "collection": format!("c{who}{round}")}),
            );
            assert!(v["result"]["files"].as_u64().unwrap() > 0, "{v}");
            secs[who] += t.elapsed().as_secs_f64() / 2.0;
        }
    }
    println!("| ingestDir | seconds | MB/s |\n|---|---|---|");
    println!("| on the owner | {:.2} | {:.2} |", secs[0], mb / secs[0]);
    println!(
        "| through a follower | {:.2} | {:.2} |",
        secs[1],
        mb / secs[1]
    );
    println!(
        "| follower / owner speed | {:.2}× | (target ≥ 0.9×) |\n",
        secs[0] / secs[1]
    );

    // Search: alternating blocks of 100 on the owner and through the follower.
    let mut lat = [Vec::new(), Vec::new()];
    for block in 0..20 {
        for who in [block % 2, 1 - block % 2] {
            let host = if who == 0 { &mut owner } else { &mut follower };
            for i in 0..100 {
                let q = QUERIES[i % QUERIES.len()];
                let t = Instant::now();
                let v = host.call("search/query", json!({"query": q, "collection": "c00"}));
                lat[who].push(t.elapsed());
                assert!(v.get("result").is_some(), "{v}");
            }
        }
    }
    let (o50, o99) = (pct(&mut lat[0], 0.5), pct(&mut lat[0], 0.99));
    let (f50, f99) = (pct(&mut lat[1], 0.5), pct(&mut lat[1], 0.99));
    println!("| search/query, 2000 each | p50 | p99 |\n|---|---|---|");
    println!("| on the owner | {o50:.0} µs | {o99:.0} µs |");
    println!("| through a follower | {f50:.0} µs | {f99:.0} µs |");
    println!(
        "| follower adds (p50) | {:.0} µs | (target ≤ 150 µs) |\n",
        f50 - o50
    );

    // The carrying alone: `collections/list` (no search work), same alternation.
    let mut lat = [Vec::new(), Vec::new()];
    for block in 0..20 {
        for who in [block % 2, 1 - block % 2] {
            let host = if who == 0 { &mut owner } else { &mut follower };
            for _ in 0..100 {
                let t = Instant::now();
                let v = host.call("collections/list", Value::Null);
                lat[who].push(t.elapsed());
                assert!(v.get("result").is_some(), "{v}");
            }
        }
    }
    let (o50, o99) = (pct(&mut lat[0], 0.5), pct(&mut lat[0], 0.99));
    let (f50, f99) = (pct(&mut lat[1], 0.5), pct(&mut lat[1], 0.99));
    println!("| collections/list, 2000 each | p50 | p99 |\n|---|---|---|");
    println!("| on the owner | {o50:.0} µs | {o99:.0} µs |");
    println!("| through a follower | {f50:.0} µs | {f99:.0} µs |");
    println!("| follower adds (p50) | {:.0} µs | |\n", f50 - o50);

    // Takeover: kill -9 the owner, time the follower's first engine call.
    drop(owner);
    let mut current = follower;
    let v = current.call("collections/list", Value::Null);
    assert!(
        !v["result"]["collections"].as_array().unwrap().is_empty(),
        "{v}"
    );
    let mut takeovers = Vec::new();
    for _ in 0..kills {
        assert_eq!(current.role(), "owner");
        let mut next = Host::start(data.path(), run.path());
        assert_eq!(next.role(), "follower");
        // Linked: one call through the follower first.
        assert!(
            next.call("collections/list", Value::Null)
                .get("result")
                .is_some()
        );
        let t = Instant::now();
        let _ = current.child.kill();
        let _ = current.child.wait();
        let v = next.call("collections/list", Value::Null);
        takeovers.push(t.elapsed());
        assert!(v.get("result").is_some(), "{v}");
        current = next;
    }
    println!(
        "takeover (kill -9 of the owner → first answered engine call on a follower), {} kills: p50 {:.1} ms, p99 {:.1} ms (target p99 ≤ 1000 ms)",
        takeovers.len(),
        pct(&mut takeovers, 0.5) / 1000.0,
        pct(&mut takeovers, 0.99) / 1000.0
    );
}
