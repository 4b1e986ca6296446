//! Engine benchmark on a real corpus: ingest speed and peak memory, re-ingest of an
//! unchanged tree, search latency, and retrieval quality of the term profiles.
//!
//! `cargo bench --bench engine [-- CORPUS]`; default corpus: the standard library of the
//! machine's `python3` without `site-packages` and `__pycache__`.
//! Each ingest runs in a fresh child process (this binary with `--child`) so that its
//! peak RSS is its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use quarry::engine::text::Profile;
use quarry::engine::{Engine, EngineConfig, IngestDirOptions, SearchRequest};
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

/// What the ranking table varies: the term profile and the definition boost.
#[derive(Clone, Copy, PartialEq)]
struct Variant {
    profile: Profile,
    boost: bool,
}

impl Variant {
    fn is_default(&self) -> bool {
        let d = EngineConfig::default();
        self.profile == d.profile && self.boost == d.definition_boost
    }

    fn name(&self) -> String {
        let p = match self.profile {
            Profile::Code => "code",
            Profile::Prose => "prose",
        };
        format!(
            "`{p}` profile, {}",
            if self.boost {
                "definition boost"
            } else {
                "no definition boost"
            }
        )
    }
}

fn open(data: &Path, v: Variant) -> Engine {
    let store = EdgeStore::open(data).expect("store");
    Engine::new(
        Arc::new(store),
        EngineConfig {
            profile: v.profile,
            definition_boost: v.boost,
            ..EngineConfig::default()
        },
    )
    .expect("engine")
}

/// Child: ingest `corpus` into `data` and print one line of figures.
fn child(corpus: &Path, data: &Path, v: Variant) {
    let engine = open(data, v);
    let t = Instant::now();
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let r = engine
        .ingest_dir(None, corpus, &options(), &CancellationToken::new(), &|p| {
            bytes.store(p.bytes, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("ingest");
    let secs = t.elapsed().as_secs_f64();
    let skipped_binary = r
        .skipped
        .iter()
        .filter(|s| s.reason.contains("binary"))
        .count();
    println!(
        "{} {} {} {} {:.3} {:.1} {}",
        r.files,
        r.chunks,
        r.unchanged,
        bytes.load(std::sync::atomic::Ordering::Relaxed),
        secs,
        peak_rss_mb(),
        skipped_binary
    );
}

struct IngestFigures {
    files: u64,
    chunks: u64,
    unchanged: u64,
    bytes: u64,
    secs: f64,
    rss_mb: f64,
    skipped_binary: u64,
}

fn run_child(corpus: &Path, data: &Path, v: Variant) -> IngestFigures {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .arg(corpus)
        .arg(data)
        .arg(match v.profile {
            Profile::Code => "code",
            Profile::Prose => "prose",
        })
        .arg(if v.boost { "boost" } else { "no-boost" })
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = line.split_whitespace().collect();
    IngestFigures {
        files: f[0].parse().unwrap(),
        chunks: f[1].parse().unwrap(),
        unchanged: f[2].parse().unwrap(),
        bytes: f[3].parse().unwrap(),
        secs: f[4].parse().unwrap(),
        rss_mb: f[5].parse().unwrap(),
        skipped_binary: f[6].parse().unwrap(),
    }
}

fn request(q: &str) -> SearchRequest {
    SearchRequest {
        query: q.to_owned(),
        limit: Some(10),
        ..SearchRequest::default()
    }
}

/// hit@1 and MRR@10 of the judged queries.
fn quality(engine: &Engine) -> (f64, f64, Vec<String>) {
    let mut hits1 = 0.0;
    let mut mrr = 0.0;
    let mut misses = Vec::new();
    for (q, want) in JUDGED {
        let r = engine.search(&request(q)).expect("search");
        let rank = rank_of(&files(&r.hits), want);
        match rank {
            Some(0) => {
                hits1 += 1.0;
                mrr += 1.0;
            }
            Some(k) => {
                mrr += 1.0 / (k as f64 + 1.0);
                misses.push(format!("{q:?} → rank {}", k + 1));
            }
            None => misses.push(format!(
                "{q:?} → not in top 10 (top: {})",
                r.hits.first().map_or("-", |h| h.path.as_str())
            )),
        }
    }
    let n = JUDGED.len() as f64;
    (hits1 / n, mrr / n, misses)
}

/// Mean terms per chunk over the corpus, with the engine's chunking (what BM25's
/// `avg_len` should be).
fn mean_terms_per_chunk(corpus: &Path) -> (f64, usize) {
    use quarry::engine::chunk::{ChunkParams, chunk, language_of};
    let (mut total, mut chunks) = (0usize, 0usize);
    let walker = ignore::WalkBuilder::new(corpus).build();
    for e in walker.flatten() {
        let p = e.path();
        if !e.file_type().is_some_and(|t| t.is_file())
            || p.components()
                .any(|c| c.as_os_str() == "site-packages" || c.as_os_str() == "__pycache__")
        {
            continue;
        }
        let (Some(lang), Ok(text)) = (language_of(p), std::fs::read_to_string(p)) else {
            continue;
        };
        for c in chunk(&text, lang, &ChunkParams::default()) {
            let mut ts = Vec::new();
            quarry::engine::text::terms(&c.text, &mut ts);
            total += ts.len();
            chunks += 1;
        }
    }
    (total as f64 / chunks.max(1) as f64, chunks)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let v = Variant {
            profile: if args[4] == "prose" {
                Profile::Prose
            } else {
                Profile::Code
            },
            boost: args[5] == "boost",
        };
        child(Path::new(&args[2]), Path::new(&args[3]), v);
        return;
    }
    let corpus = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(stdlib);
    println!("Quarry engine benchmark — corpus {}", corpus.display());
    let (mean, n) = mean_terms_per_chunk(&corpus);
    println!(
        "mean terms per chunk: {mean:.0} over {n} chunks (BM25 avg_len in use: {})",
        quarry::engine::text::Bm25Params::default().avg_len
    );
    let mut quality_rows = Vec::new();
    let variants = [Profile::Code, Profile::Prose]
        .into_iter()
        .flat_map(|profile| [false, true].map(|boost| Variant { profile, boost }));
    for v in variants {
        let data = tempfile::tempdir().expect("temp");
        let first = run_child(&corpus, data.path(), v);
        let engine_quality = {
            let engine = open(data.path(), v);
            quality(&engine)
        };
        let (h1, mrr, misses) = engine_quality;
        quality_rows.push((v, h1, mrr, misses));
        if !v.is_default() {
            continue;
        }
        let again = run_child(&corpus, data.path(), v);
        let engine = open(data.path(), v);
        println!(
            "\n| ingest ({}, the default; fresh process) | figure |\n|---|---|",
            v.name()
        );
        println!(
            "| text files indexed | {} ({} binary skipped) |",
            first.files, first.skipped_binary
        );
        println!("| bytes read | {:.1} MB |", first.bytes as f64 / 1e6);
        println!(
            "| chunks | {} ({:.1} per file) |",
            first.chunks,
            first.chunks as f64 / first.files as f64
        );
        println!("| wall time | {:.2} s (target < 20 s) |", first.secs);
        println!("| files/s | {:.0} |", first.files as f64 / first.secs);
        println!("| MB/s | {:.1} |", first.bytes as f64 / 1e6 / first.secs);
        println!("| chunks/s | {:.0} |", first.chunks as f64 / first.secs);
        println!("| peak RSS | {:.0} MB |", first.rss_mb);
        println!(
            "| re-ingest, nothing changed | {:.2} s ({} unchanged, {:.1}× faster) |",
            again.secs,
            again.unchanged,
            first.secs / again.secs
        );
        // Search latency over the judged queries, repeated.
        let mut lat = Vec::new();
        for _ in 0..10 {
            for (q, _) in JUDGED {
                let t = Instant::now();
                engine.search(&request(q)).expect("search");
                lat.push(t.elapsed());
            }
        }
        lat.sort();
        println!(
            "| search latency, {} queries × 10, limit 10 | p50 {:.2} ms, p99 {:.2} ms (target p50 ≤ 10 ms) |",
            JUDGED.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
    println!(
        "\n| configuration ({} judged queries: defining file first) | hit@1 | MRR@10 |\n|---|---|---|",
        JUDGED.len()
    );
    for (v, h1, mrr, _) in &quality_rows {
        let name = if v.is_default() {
            format!("**{} (default)**", v.name())
        } else {
            v.name()
        };
        println!("| {name} | {h1:.2} | {mrr:.3} |");
    }
    for (v, _, _, misses) in &quality_rows {
        if v.is_default() {
            for m in misses {
                println!("  miss: {m}");
            }
        }
    }
}
