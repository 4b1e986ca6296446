//! Semantic search benchmark: embedding throughput (1 and 2 threads), query embedding
//! latency, the background embedder through the store, foreground search latency while
//! it runs, hybrid search latency, peak RSS with the model loaded, and hit@1 / MRR@10 of
//! sparse, dense and hybrid ranking on judged queries (with the fusion-weight grid the
//! weights were tuned on).
//!
//! `cargo bench --bench semantic`. The model: `QUARRY_EMBED_MODEL`,
//! `QUARRY_EMBED_TOKENIZER` and `ORT_DYLIB_PATH`, else the packages `scripts/test.sh`
//! installs into `$CARGO_TARGET_DIR/py-venv` (or `target/py-venv`).
//!
//! Corpus: this machine's Python standard library, its top-level modules plus every
//! file a judged query names (the whole library would take the embedder most of an
//! hour on two cores), copied with their relative paths into a temporary folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quarry::engine::semantic::{Model, ModelConfig};
use quarry::engine::{Engine, EngineConfig, IngestDirOptions, SearchMode, SearchRequest};
use quarry::store::edge::EdgeStore;
use tokio_util::sync::CancellationToken;

#[path = "common/judged.rs"]
mod judged;
use judged::{JUDGED as IDENTIFIER, files, pct, peak_rss_mb, rank_of, stdlib};

/// Plain-language queries, written for this bench (none from any held-out set).
const PLAIN: &[(&str, &str)] = &[
    (
        "measure how long a small piece of code takes to run",
        "timeit.py",
    ),
    ("pick numbers from a bell curve distribution", "random.py"),
    (
        "average and spread of a list of measurements",
        "statistics.py",
    ),
    (
        "read settings from an ini file with sections",
        "configparser.py",
    ),
    ("expand wildcards into matching file names", "glob.py"),
    (
        "save python objects to bytes and load them back later",
        "pickle.py",
    ),
    ("a dictionary that persists on disk", "shelve.py"),
    (
        "print the chain of calls that led to an error",
        "traceback.py",
    ),
    ("run a function later at a given time", "sched.py"),
    (
        "check whether two folders hold the same files",
        "filecmp.py",
    ),
    (
        "print the days of a month laid out as a grid",
        "calendar.py",
    ),
    ("is this address inside that subnet", "ipaddress.py"),
    (
        "guess the content type from a file extension",
        "mimetypes.py",
    ),
    (
        "make an unguessable token for a password reset link",
        "secrets.py",
    ),
    (
        "arithmetic with exact decimal fractions for money",
        "_pydecimal.py|decimal.py",
    ),
    ("record which lines of a program were executed", "trace.py"),
    (
        "find where a program spends its time",
        "profile.py|cProfile.py",
    ),
    (
        "turn a text like 2024-01-31 into a date object",
        "_strptime.py|datetime.py",
    ),
    (
        "pack several files into one compressed archive",
        "zipfile.py|tarfile.py",
    ),
    (
        "check that a test result equals what was expected",
        "unittest/case.py",
    ),
    (
        "download a web page over http",
        "urllib/request.py|http/client.py",
    ),
    (
        "replace angle brackets and ampersands so text is safe in a web page",
        "html/__init__.py",
    ),
    (
        "wait until any of many sockets is ready to read",
        "selectors.py",
    ),
    ("list the parameters a function accepts", "inspect.py"),
    (
        "sort tasks so that each comes after what it depends on",
        "graphlib.py",
    ),
    (
        "prompt for a secret without showing it on screen",
        "getpass.py",
    ),
    ("let threads hand work to each other safely", "queue.py"),
    ("compute a cryptographic digest of some bytes", "hashlib.py"),
    ("object oriented file system paths", "pathlib.py"),
    (
        "a protocol for converting between bytes and text in a given encoding",
        "codecs.py",
    ),
];

/// The model files: the environment, else the test venv's packages.
fn model_config() -> ModelConfig {
    let env = |k| std::env::var_os(k).map(PathBuf::from);
    if let (Some(model), Some(tokenizer)) =
        (env("QUARRY_EMBED_MODEL"), env("QUARRY_EMBED_TOKENIZER"))
    {
        return ModelConfig {
            model,
            tokenizer,
            runtime: env("ORT_DYLIB_PATH"),
        };
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let python = Path::new(&target).join("py-venv/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "from quarry_client.semantic import model_paths as m; p = m(); print(p.model); print(p.tokenizer); print(p.runtime)",
        ])
        .output();
    let lines: Vec<String> = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        _ => {
            eprintln!(
                "no model: set QUARRY_EMBED_MODEL, QUARRY_EMBED_TOKENIZER and ORT_DYLIB_PATH, or run scripts/test.sh once (it installs the model into {})",
                python.display()
            );
            std::process::exit(2);
        }
    };
    ModelConfig {
        model: lines[0].clone().into(),
        tokenizer: lines[1].clone().into(),
        runtime: Some(lines[2].clone().into()),
    }
}

/// Top-level modules and every judged file, copied into `into`.
fn corpus(into: &Path) -> usize {
    let root = stdlib();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("stdlib")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "py") && p.is_file())
        .collect();
    for (_, want) in IDENTIFIER.iter().chain(PLAIN) {
        for w in want.split('|') {
            let p = root.join(w);
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files.dedup();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under the root");
        let to = into.join(rel);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(f, to).expect("copy");
    }
    files.len()
}

fn cpu_seconds() -> f64 {
    // utime and stime (fields 14 and 15) in clock ticks of 1/100 s (Linux's USER_HZ).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// `threads` threads embed `texts` in batches of 8 taken from a shared queue (as the
/// background embedder's workers do), each with its own encoder: (wall seconds, CPU
/// seconds).
fn embed_all(model: &Model, texts: &[String], threads: usize) -> (f64, f64) {
    let mut encoders: Vec<_> = (0..threads)
        .map(|_| model.encoder().expect("encoder"))
        .collect();
    let batches: Vec<&[String]> = texts.chunks(8).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (cpu0, t) = (cpu_seconds(), Instant::now());
    std::thread::scope(|s| {
        for enc in encoders.iter_mut() {
            let (batches, next) = (&batches, &next);
            s.spawn(move || {
                while let Some(batch) =
                    batches.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let b: Vec<&str> = batch.iter().map(String::as_str).collect();
                    model.embed(enc, &b).expect("embed");
                }
            });
        }
    });
    (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0)
}

fn request(q: &str, mode: SearchMode, limit: usize) -> SearchRequest {
    SearchRequest {
        query: q.to_owned(),
        limit: Some(limit),
        mode: Some(mode),
        ..SearchRequest::default()
    }
}

/// (hit@1, MRR@10) over `set` for ranked file lists.
fn score(ranks: &[Option<usize>]) -> (f64, f64) {
    let n = ranks.len() as f64;
    let h1 = ranks.iter().filter(|r| **r == Some(0)).count() as f64 / n;
    let mrr = ranks
        .iter()
        .map(|r| r.map_or(0.0, |k| 1.0 / (k as f64 + 1.0)))
        .sum::<f64>()
        / n;
    (h1, mrr)
}

/// Weighted RRF of two chunk lists (the engine's `fusion::rrf`), as file lists.
fn fuse(
    sparse: &[quarry::engine::SearchHit],
    dense: &[quarry::engine::SearchHit],
    ws: f32,
    wd: f32,
) -> Vec<String> {
    let mut score: HashMap<(String, u64), f32> = HashMap::new();
    for (list, w) in [(sparse, ws), (dense, wd)] {
        for (r, h) in list.iter().enumerate() {
            *score.entry((h.path.clone(), h.chunk_index)).or_default() +=
                quarry::engine::semantic::fusion::rrf(w, r);
        }
    }
    let mut chunks: Vec<_> = score.into_iter().collect();
    chunks.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out: Vec<String> = Vec::new();
    for ((p, _), _) in chunks {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn main() {
    let config = model_config();
    let dir = tempfile::tempdir().expect("temp");
    let corpus_dir = dir.path().join("corpus");
    let nfiles = corpus(&corpus_dir);
    println!(
        "Quarry semantic benchmark — {nfiles} files of {} (top-level modules and the judged files)",
        stdlib().display()
    );
    let t = Instant::now();
    let model = Arc::new(Model::load(&config).expect("model"));
    println!(
        "model {} ({} dimensions, fingerprint {}) loaded in {:.0} ms",
        model.info().name,
        model.info().dimension,
        model.info().fingerprint,
        t.elapsed().as_secs_f64() * 1e3
    );

    // The engine: BM25 first, then the background embedder.
    let store = EdgeStore::open(&dir.path().join("data")).expect("store");
    let engine = Engine::new(
        Arc::new(store),
        EngineConfig {
            model: Some(model.clone()),
            ..EngineConfig::default()
        },
    )
    .expect("engine");
    let t = Instant::now();
    let r = engine
        .ingest_dir(
            None,
            &corpus_dir,
            &IngestDirOptions::default(),
            &CancellationToken::new(),
            &|_| {},
        )
        .expect("ingest");
    let ingest_secs = t.elapsed().as_secs_f64();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    println!(
        "\ningest (BM25, searchable at once): {} files, {} chunks in {ingest_secs:.2} s",
        r.files, r.chunks
    );
    // Foreground search while the embedder runs: one sparse search every 20 ms.
    let all: Vec<&str> = IDENTIFIER.iter().chain(PLAIN).map(|(q, _)| *q).collect();
    let mut during = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while Instant::now() < until {
        let t = Instant::now();
        engine
            .search(&request(all[i % all.len()], SearchMode::Sparse, 10))
            .expect("search");
        during.push(t.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = |e: &Engine| {
        e.collections().expect("list")[0]
            .dense
            .clone()
            .expect("dense")
    };
    let mid = status(&engine);
    engine
        .wait_for_embeddings("default", &CancellationToken::new(), &|_, _| {})
        .expect("wait");
    let (embed_wall, embed_cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let done = status(&engine);
    println!(
        "background embedder: {} chunks in {embed_wall:.1} s wall ({:.1} chunks/s, {:.1} per CPU-second), {} embedded during the 20 s of foreground searches",
        done.embedded,
        done.embedded as f64 / embed_wall,
        done.embedded as f64 / embed_cpu,
        mid.embedded
    );
    let mut idle = Vec::new();
    for i in 0..during.len() {
        let t = Instant::now();
        engine
            .search(&request(all[i % all.len()], SearchMode::Sparse, 10))
            .expect("search");
        idle.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    during.sort();
    idle.sort();
    println!(
        "sparse search while embedding: p50 {:.2} ms, p99 {:.2} ms; idle: p50 {:.2} ms, p99 {:.2} ms; p99 ratio {:.2}× (target ≤ 2×)",
        pct(&during, 0.5),
        pct(&during, 0.99),
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&during, 0.99) / pct(&idle, 0.99)
    );
    for mode in [SearchMode::Hybrid, SearchMode::Dense, SearchMode::Sparse] {
        let mut lat = Vec::new();
        for _ in 0..5 {
            for q in &all {
                let t = Instant::now();
                engine.search(&request(q, mode, 10)).expect("search");
                lat.push(t.elapsed());
            }
        }
        lat.sort();
        println!(
            "{mode:?} search, {} queries × 5, limit 10: p50 {:.2} ms, p99 {:.2} ms",
            all.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
    }
    println!(
        "peak RSS so far (the model's three sessions — query and two workers — and the store, {} chunks embedded): {:.0} MB (target ≤ 300 MB)",
        done.embedded,
        peak_rss_mb()
    );

    // Embedding throughput on real chunks, 1 and 2 threads, same work.
    let texts: Vec<String> = {
        use quarry::engine::chunk::{ChunkParams, chunk};
        ["argparse.py", "difflib.py", "subprocess.py"]
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(corpus_dir.join(f)).expect("a corpus file");
                chunk(&text, "python", &ChunkParams::default())
                    .into_iter()
                    .map(|c| c.text)
                    .collect::<Vec<_>>()
            })
            .take(192)
            .collect()
    };
    let (w1, c1) = embed_all(&model, &texts, 1);
    let (w2, c2) = embed_all(&model, &texts, 2);
    let n = texts.len() as f64;
    println!(
        "\n| embedding ({} chunks of argparse.py, difflib.py, subprocess.py; batches of 8 from a shared queue) | chunks/s wall | chunks per CPU-second |\n|---|---|---|",
        texts.len()
    );
    println!("| 1 thread | {:.1} | {:.1} |", n / w1, n / c1);
    println!("| 2 threads | {:.1} | {:.1} |", n / w2, n / c2);
    println!("scaling 1 → 2 threads: {:.2}× (target ≥ 1.8×)", w1 / w2);
    let mut q = Vec::new();
    for _ in 0..5 {
        for (query, _) in IDENTIFIER.iter().chain(PLAIN) {
            let t = Instant::now();
            model.embed_query(query).expect("query");
            q.push(t.elapsed());
        }
    }
    q.sort();
    println!(
        "query embedding, {} queries × 5: p50 {:.2} ms, p99 {:.2} ms",
        IDENTIFIER.len() + PLAIN.len(),
        pct(&q, 0.5),
        pct(&q, 0.99)
    );

    // Quality.
    println!(
        "\n| ranking | identifier/keyword ({}) hit@1 | MRR@10 | plain language ({}) hit@1 | MRR@10 | all ({}) hit@1 | MRR@10 |\n|---|---|---|---|---|---|---|",
        IDENTIFIER.len(),
        PLAIN.len(),
        IDENTIFIER.len() + PLAIN.len()
    );
    let lists = |mode| -> Vec<Vec<quarry::engine::SearchHit>> {
        IDENTIFIER
            .iter()
            .chain(PLAIN)
            .map(|(q, _)| engine.search(&request(q, mode, 30)).expect("search").hits)
            .collect()
    };
    let (sparse, dense, hybrid) = (
        lists(SearchMode::Sparse),
        lists(SearchMode::Dense),
        lists(SearchMode::Hybrid),
    );
    let wants: Vec<&str> = IDENTIFIER.iter().chain(PLAIN).map(|(_, w)| *w).collect();
    let row = |name: &str, ranked: &dyn Fn(usize) -> Vec<String>| {
        let ranks: Vec<Option<usize>> = (0..wants.len())
            .map(|i| rank_of(&ranked(i), wants[i]))
            .collect();
        let k = IDENTIFIER.len();
        let (a, b, c) = (score(&ranks[..k]), score(&ranks[k..]), score(&ranks));
        println!(
            "| {name} | {:.2} | {:.3} | {:.2} | {:.3} | {:.2} | {:.3} |",
            a.0, a.1, b.0, b.1, c.0, c.1
        );
        ranks
    };
    row("sparse (BM25)", &|i| files(&sparse[i]));
    row("dense (all-MiniLM-L6-v2 int8)", &|i| files(&dense[i]));
    let ranks = row("**hybrid (the engine's weights)**", &|i| {
        files(&hybrid[i][..hybrid[i].len().min(10)])
    });
    for (ws, wd) in [(1.0, 1.0), (1.0, 0.5), (0.7, 1.0), (0.5, 1.0), (1.0, 0.3)] {
        row(
            &format!("fixed weights sparse {ws}, dense {wd} (grid)"),
            &|i| fuse(&sparse[i], &dense[i], ws, wd),
        );
    }
    // The weights per query shape: MRR@10 of each fixed pair over the queries of
    // each shape (the engine picks the pair by shape).
    use quarry::engine::semantic::fusion::{Shape, shape};
    let queries: Vec<&str> = IDENTIFIER.iter().chain(PLAIN).map(|(q, _)| *q).collect();
    println!(
        "\n| fixed weights (sparse, dense) | identifier-shaped MRR@10 | two plain words | three or more plain words |\n|---|---|---|---|"
    );
    let shapes = [Shape::Identifier, Shape::Mixed, Shape::Sentence];
    let counts: Vec<usize> = shapes
        .iter()
        .map(|sh| queries.iter().filter(|q| shape(q) == *sh).count())
        .collect();
    for (ws, wd) in [
        (1.0, 0.0),
        (1.0, 0.3),
        (1.0, 0.5),
        (1.0, 1.0),
        (0.7, 1.0),
        (0.5, 1.0),
        (0.3, 1.0),
        (0.0, 1.0),
    ] {
        let cells: Vec<String> = shapes
            .iter()
            .map(|sh| {
                let ranks: Vec<Option<usize>> = (0..queries.len())
                    .filter(|&i| shape(queries[i]) == *sh)
                    .map(|i| rank_of(&fuse(&sparse[i], &dense[i], ws, wd), wants[i]))
                    .collect();
                if ranks.is_empty() {
                    "-".into()
                } else {
                    format!("{:.3}", score(&ranks).1)
                }
            })
            .collect();
        println!("| {ws}, {wd} | {} |", cells.join(" | "));
    }
    println!(
        "(queries per shape: {} identifier-shaped, {} two plain words, {} three or more)",
        counts[0], counts[1], counts[2]
    );
    for (i, r) in ranks.iter().enumerate() {
        if *r != Some(0) {
            let q = IDENTIFIER.iter().chain(PLAIN).nth(i).map_or("", |x| x.0);
            println!(
                "  hybrid miss: {q:?} → {}",
                r.map_or("not in top 10".into(), |k| format!("rank {}", k + 1))
            );
        }
    }
}
