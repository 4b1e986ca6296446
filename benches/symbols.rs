//! What parsing code costs and what `search/symbols` answers in: on the Python standard
//! library and on Rust sources from `~/.cargo/registry/src` (the newest version of each
//! crate named in `QUARRY_BENCH_CRATES`, default `tokio,serde,hyper,tonic,regex`), each
//! ingested in a fresh child process with and without parsing (time, peak RSS, symbols
//! found, symbols per second of the extra time), then `search/symbols` latency over
//! exact names, prefixes, sub-words, qualified names and typos taken from the index.
//!
//! `cargo bench --bench symbols`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarry::engine::{Engine, EngineConfig, IngestDirOptions, SymbolsRequest};
use quarry::store::edge::EdgeStore;
use tokio_util::sync::CancellationToken;

#[path = "common/judged.rs"]
mod judged;
use judged::{JUDGED, files, pct, peak_rss_mb, rank_of, stdlib};

fn options() -> IngestDirOptions {
    IngestDirOptions {
        include: vec![],
        exclude: vec!["site-packages/".into(), "__pycache__/".into()],
    }
}

/// The newest version of each named crate in the cargo registry.
fn rust_sources() -> Vec<PathBuf> {
    let names = std::env::var("QUARRY_BENCH_CRATES")
        .unwrap_or_else(|_| "tokio,serde,hyper,tonic,regex".into());
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let mut dirs = Vec::new();
    for index in std::fs::read_dir(home.join(".cargo/registry/src"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for name in names.split(',') {
            let mut versions: Vec<PathBuf> = std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix(&format!("{name}-")))
                        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                })
                .collect();
            versions.sort();
            dirs.extend(versions.pop());
        }
    }
    dirs
}

fn config(mode: &str) -> EngineConfig {
    EngineConfig {
        parse_code: mode != "plain",
        syntax_chunks: mode == "chunks",
        ..EngineConfig::default()
    }
}

/// In a child: ingest `roots` (`plain`: no parsing; `parse`; `chunks`: parsing and
/// syntax-aware chunks), print `secs rss chunks`.
fn child(data: &Path, mode: &str, roots: &[PathBuf]) {
    let store = EdgeStore::open(data).expect("store");
    let engine = Engine::new(Arc::new(store), config(mode)).expect("engine");
    let t = Instant::now();
    let mut chunks = 0;
    for root in roots {
        let r = engine
            .ingest_dir(None, root, &options(), &CancellationToken::new(), &|_| {})
            .expect("ingest");
        chunks += r.chunks;
    }
    let secs = t.elapsed().as_secs_f64();
    let rss = peak_rss_mb();
    println!("{secs:.3} {rss:.1} {chunks}");
}

fn run_child(data: &Path, mode: &str, roots: &[PathBuf]) -> (f64, f64) {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.arg("--child").arg(data).arg(mode);
    cmd.args(roots);
    let out = cmd.output().expect("child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace();
    let secs: f64 = f.next().unwrap().parse().unwrap();
    let rss: f64 = f.next().unwrap().parse().unwrap();
    (secs, rss)
}

/// Queries made from the names in the index: exact, prefix, sub-word, qualified, typo.
fn queries(engine: &Engine) -> Vec<String> {
    let mut names: Vec<(String, Option<String>)> = Vec::new();
    for seed in [
        "get", "new", "parse", "read", "write", "run", "init", "send",
    ] {
        for h in engine
            .search_symbols(&SymbolsRequest {
                query: seed.into(),
                limit: Some(25),
                ..SymbolsRequest::default()
            })
            .expect("symbols")
        {
            names.push((h.name, h.container));
        }
    }
    let mut out = Vec::new();
    for (i, (name, container)) in names.iter().enumerate() {
        out.push(match i % 5 {
            0 => name.clone(),
            1 => name.chars().take(4).collect(),
            2 => name.rsplit('_').next().unwrap_or(name).to_owned(),
            3 => match container {
                Some(c) => format!("{}.{name}", c.rsplit('.').next().unwrap_or(c)),
                None => name.clone(),
            },
            _ => {
                // One adjacent swap.
                let mut c: Vec<char> = name.chars().collect();
                if c.len() > 4 {
                    c.swap(2, 3);
                }
                c.into_iter().collect()
            }
        });
    }
    out
}

fn measure(name: &str, roots: &[PathBuf]) {
    let plain_dir = tempfile::tempdir().expect("tmp");
    let parse_dir = tempfile::tempdir().expect("tmp");
    let (plain_s, plain_rss) = run_child(plain_dir.path(), "plain", roots);
    let (parse_s, parse_rss) = run_child(parse_dir.path(), "parse", roots);
    let engine = Engine::new(
        Arc::new(EdgeStore::open(parse_dir.path()).expect("store")),
        EngineConfig::default(),
    )
    .expect("engine");
    // The first query reads the table.
    let t = Instant::now();
    let symbols = engine
        .search_symbols(&SymbolsRequest {
            query: "x".into(),
            limit: Some(1),
            ..SymbolsRequest::default()
        })
        .map(|_| ());
    let load = t.elapsed();
    symbols.expect("symbols");
    let count = engine.symbol_count(None).expect("count");
    let qs = queries(&engine);
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        for q in &qs {
            let t = Instant::now();
            engine
                .search_symbols(&SymbolsRequest {
                    query: q.clone(),
                    ..SymbolsRequest::default()
                })
                .expect("symbols");
            times.push(t.elapsed());
        }
    }
    times.sort();
    let extra = (parse_s - plain_s).max(1e-3);
    println!(
        "| {name} | {plain_s:.1} | {parse_s:.1} | {:+.0} % | {plain_rss:.0} | {parse_rss:.0} | {count} | {:.0} | {:.0} | {:.2} | {:.2} | {} |",
        (parse_s / plain_s - 1.0) * 100.0,
        count as f64 / extra,
        load.as_secs_f64() * 1e3,
        pct(&times, 0.5),
        pct(&times, 0.99),
        qs.len() * 5,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let roots: Vec<PathBuf> = args[4..].iter().map(PathBuf::from).collect();
        child(Path::new(&args[2]), &args[3], &roots);
        return;
    }
    let rust = rust_sources();
    println!(
        "Rust sources: {}",
        rust.iter()
            .map(|p| p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "| corpus | ingest s, no parsing | ingest s, parsing | parsing costs | peak RSS MB, no parsing | peak RSS MB, parsing | symbols | symbols/s of the extra time | first query (reads the table) ms | search/symbols p50 ms | p99 ms | queries |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    measure("Python stdlib", &[stdlib()]);
    if !rust.is_empty() {
        measure("Rust crates", &rust);
    }
    // Ranking of the engine bench's 30 judged queries, line windows against chunks cut
    // along definitions.
    println!();
    println!("| chunking (Python stdlib) | chunks | hit@1 | MRR@10 |");
    println!("|---|---|---|---|");
    for (name, mode) in [("line windows", "parse"), ("along definitions", "chunks")] {
        let dir = tempfile::tempdir().expect("tmp");
        run_child(dir.path(), mode, &[stdlib()]);
        let engine = Engine::new(
            Arc::new(EdgeStore::open(dir.path()).expect("store")),
            config(mode),
        )
        .expect("engine");
        let chunks = engine.collections().expect("collections")[0].points;
        let (mut hits1, mut mrr) = (0.0, 0.0);
        for (q, want) in JUDGED {
            let r = engine
                .search(&quarry::engine::SearchRequest {
                    query: (*q).to_owned(),
                    limit: Some(10),
                    ..Default::default()
                })
                .expect("search");
            if let Some(k) = rank_of(&files(&r.hits), want) {
                mrr += 1.0 / (k as f64 + 1.0);
                if k == 0 {
                    hits1 += 1.0;
                }
            }
        }
        let n = JUDGED.len() as f64;
        println!("| {name} | {chunks} | {:.2} | {:.3} |", hits1 / n, mrr / n);
    }
}
