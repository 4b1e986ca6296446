//! What the engine and semantic benches share: the 30 judged queries of the engine
//! bench, where the standard library is, and how figures are read.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// (query, file that should rank first — any of the `|`-separated path suffixes).
pub const JUDGED: &[(&str, &str)] = &[
    ("dedent", "textwrap.py"),
    ("remove common leading whitespace from lines", "textwrap.py"),
    ("split a string using shell-like syntax", "shlex.py"),
    ("convert a color from RGB to HSV", "colorsys.py"),
    ("insert an item into a sorted list", "bisect.py"),
    ("heap queue algorithm", "heapq.py"),
    (
        "translate a shell pattern to a regular expression",
        "fnmatch.py",
    ),
    ("parse command line arguments", "argparse.py"),
    ("deep copy of an object", "copy.py"),
    ("compare sequences and compute differences", "difflib.py"),
    ("SequenceMatcher", "difflib.py"),
    ("unified_diff", "difflib.py"),
    ("encode binary data as base64", "base64.py"),
    ("namedtuple", "collections/__init__.py"),
    ("urlsplit", "urllib/parse.py"),
    ("parse a URL into components", "urllib/parse.py"),
    ("create a temporary directory", "tempfile.py"),
    ("pretty print a data structure", "pprint.py"),
    ("ThreadPoolExecutor", "concurrent/futures/thread.py"),
    ("lru_cache", "functools.py"),
    ("rational numbers", "fractions.py"),
    ("getLogger", "logging/__init__.py"),
    ("copytree", "shutil.py"),
    ("compress a file with gzip", "gzip.py"),
    ("JSONEncoder", "json/encoder.py"),
    (
        "run a command in a subprocess and capture its output",
        "subprocess.py",
    ),
    ("send mail with SMTP", "smtplib.py"),
    ("read and write CSV files", "csv.py"),
    ("http request handler server", "http/server.py"),
    ("wrap text to a given width", "textwrap.py"),
];

/// The standard library of this machine's `python3`.
pub fn stdlib() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The distinct files of ranked hits, in rank order.
pub fn files(hits: &[quarry::engine::SearchHit]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in hits {
        if !out.contains(&h.path) {
            out.push(h.path.clone());
        }
    }
    out
}

/// The 0-based rank among the first 10 `files` of the first one ending in one of the
/// `|`-separated path suffixes of `want`.
pub fn rank_of(files: &[String], want: &str) -> Option<usize> {
    files
        .iter()
        .take(10)
        .position(|p| want.split('|').any(|w| p.ends_with(&format!("/{w}"))))
}

/// This process's peak resident memory (`VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The `q` quantile of sorted durations, in ms.
pub fn pct(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}
