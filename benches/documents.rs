//! Document extraction (issue 16) on real files: per format, throughput (MB/s, and
//! pages/s for PDF) and peak RSS, each format extracted in a fresh child process; a
//! baseline in the same run (poppler's `pdftotext` for PDF, Python's `html.parser` for
//! HTML, when present); and known-phrase recall: phrases that `pdftotext` puts on one
//! page only, looked for on that page of our text and by search (a top-10 hit on that
//! page), and the same manual's PDF phrases looked for in its HTML edition.
//!
//! Real files: every PDF under /usr/share/doc (Debian's `bash-doc`, `gnuplot-doc`,
//! `debian-faq`, … when installed), HTML from the Rust docs
//! (`$(rustc --print sysroot)/share/doc/rust/html`, the first `QUARRY_BENCH_HTML`
//! files, default 3000) and /usr/share/doc. There are no real DOCX, ODT, EPUB or
//! notebook files on these machines: those are made here from the real text of the
//! Bash manual (HTML) and the Python standard library, and said to be made.
//!
//! `apt-get install -y bash-doc gnuplot-doc debian-faq poppler-utils && cargo bench --bench documents`

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use quarry::engine::document::{self, Limits};
use quarry::engine::{Engine, EngineConfig, IngestDirOptions, SearchFilter, SearchRequest};
use quarry::store::edge::EdgeStore;
use tokio_util::sync::CancellationToken;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Files under `dir` whose names end with one of `suffixes`, sorted.
fn find(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() && !p.is_symlink() {
            find(&p, suffixes, out);
        } else if p.is_file() {
            let name = p.to_string_lossy();
            if suffixes.iter().any(|s| name.ends_with(s)) {
                out.push(p);
            }
        }
    }
}

/// Real PDFs: /usr/share/doc's, `.pdf.gz` ones unpacked into `tmp`.
fn pdfs(tmp: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    find(
        Path::new("/usr/share/doc"),
        &[".pdf", ".pdf.gz"],
        &mut found,
    );
    // Debian links one manual from several packages' folders: each file once.
    let mut seen = std::collections::HashSet::new();
    found.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    found.sort();
    let mut out = Vec::new();
    for p in found {
        if p.to_string_lossy().ends_with(".gz") {
            let name = p.file_stem().unwrap().to_owned();
            let dest = tmp.join(name);
            let unpacked = Command::new("gzip").arg("-dc").arg(&p).output();
            if let Ok(o) = unpacked
                && o.status.success()
            {
                std::fs::write(&dest, o.stdout).unwrap();
                out.push(dest);
            }
        } else {
            out.push(p);
        }
    }
    out
}

fn htmls() -> Vec<PathBuf> {
    let limit: usize = std::env::var("QUARRY_BENCH_HTML")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let mut rust = Vec::new();
    if let Ok(o) = sysroot {
        let root = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        find(&root.join("share/doc/rust/html/std"), &[".html"], &mut rust);
    }
    rust.sort();
    rust.truncate(limit);
    let mut doc = Vec::new();
    find(Path::new("/usr/share/doc"), &[".html", ".htm"], &mut doc);
    find(
        Path::new("/usr/share/debian-reference"),
        &[".html"],
        &mut doc,
    );
    let mut seen = std::collections::HashSet::new();
    doc.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    doc.sort();
    rust.extend(doc);
    rust
}

/// Words for phrase matching: ASCII letter runs, lower-cased.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Up to `n` five-word phrases (words of 3+ letters) that `pdftotext` puts on exactly
/// one page of `pdf`: (phrase, page).
fn phrases(pdf: &Path, n: usize) -> Vec<(String, u32)> {
    let Ok(out) = Command::new("pdftotext").arg(pdf).arg("-").output() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let pages: Vec<String> = text.split('\x0c').map(|p| words(p).join(" ")).collect();
    let mut candidates = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let w: Vec<&str> = page.split(' ').collect();
        let mut j = 11;
        while j + 5 < w.len() {
            if w[j..j + 5].iter().all(|x| x.len() > 2) {
                candidates.push((w[j..j + 5].join(" "), i as u32 + 1));
            }
            j += 53;
        }
    }
    // Spread over the document: every k-th candidate.
    let step = (candidates.len() / n.max(1)).max(1);
    candidates
        .into_iter()
        .step_by(step)
        .filter(|(p, page)| {
            let on: Vec<usize> = (0..pages.len())
                .filter(|&i| pages[i].contains(p.as_str()))
                .collect();
            on == [*page as usize - 1]
        })
        .take(n)
        .collect()
}

/// In a child: extract `files` as `language`; print `secs bytes pages files failed rss`.
fn child(language: &'static str, files: &[PathBuf]) {
    let (mut secs, mut bytes, mut pages, mut failed) = (0.0, 0u64, 0u64, 0);
    for f in files {
        let data = std::fs::read(f).unwrap();
        bytes += data.len() as u64;
        let t = Instant::now();
        let r = document::extract(language, data, Limits::default());
        secs += t.elapsed().as_secs_f64();
        match r {
            Ok(e) => {
                pages += e
                    .sections
                    .iter()
                    .filter_map(|s| s.location.page)
                    .collect::<std::collections::HashSet<_>>()
                    .len() as u64
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "{secs:.4} {bytes} {pages} {} {failed} {:.1}",
        files.len(),
        peak_rss_mb()
    );
}

struct Figures {
    secs: f64,
    bytes: u64,
    pages: u64,
    files: usize,
    failed: usize,
    rss: f64,
}

fn run_child(language: &str, files: &[PathBuf]) -> Figures {
    let list = std::env::temp_dir().join(format!("quarry-bench-{language}-{}", std::process::id()));
    std::fs::write(
        &list,
        files
            .iter()
            .map(|f| f.to_string_lossy() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", language])
        .arg(&list)
        .output()
        .expect("child");
    let _ = std::fs::remove_file(&list);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    Figures {
        secs: f[0].parse().unwrap(),
        bytes: f[1].parse().unwrap(),
        pages: f[2].parse().unwrap(),
        files: f[3].parse().unwrap(),
        failed: f[4].parse().unwrap(),
        rss: f[5].parse().unwrap(),
    }
}

/// Seconds a baseline program takes over `files` (`None` when it is not installed).
fn baseline(language: &str, files: &[PathBuf]) -> Option<f64> {
    let t = Instant::now();
    match language {
        "pdf" => {
            for f in files {
                let ok = Command::new("pdftotext")
                    .arg(f)
                    .arg("/dev/null")
                    .status()
                    .ok()?;
                let _ = ok;
            }
        }
        "html" => {
            let script = "import sys, html.parser\n\
class P(html.parser.HTMLParser):\n    def __init__(s): super().__init__(); s.out=[]\n    def handle_data(s, d): s.out.append(d)\n\
for f in sys.stdin.read().split('\\n'):\n    if f:\n        p=P(); p.feed(open(f, encoding='utf-8', errors='replace').read()); p.close()\n";
            let mut child = Command::new("python3")
                .args(["-c", script])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .ok()?;
            let list: String = files.iter().map(|f| f.to_string_lossy() + "\n").collect();
            child.stdin.take()?.write_all(list.as_bytes()).ok()?;
            if !child.wait().ok()?.success() {
                return None;
            }
        }
        _ => return None,
    }
    Some(t.elapsed().as_secs_f64())
}

/// Synthetic office files and books made from real text (the Bash manual's HTML
/// sections; Python standard library modules for notebooks) into `dir`.
fn synthetic(dir: &Path) -> HashMap<&'static str, Vec<PathBuf>> {
    use zip::write::SimpleFileOptions;
    let mut out: HashMap<&'static str, Vec<PathBuf>> = HashMap::new();
    let manual = Path::new("/usr/share/doc/bash/bashref.html");
    let sections: Vec<(String, String)> = match std::fs::read(manual) {
        Ok(bytes) => {
            let e = document::extract_here("html", &bytes, Limits::default()).unwrap();
            let lines: Vec<&str> = e.text.lines().collect();
            e.sections
                .iter()
                .map(|s| {
                    let title = s.location.heading.clone().unwrap_or_default();
                    let title = title.rsplit(" > ").next().unwrap_or("").to_owned();
                    (title, lines[s.start..s.end].join("\n"))
                })
                .collect()
        }
        Err(_) => return out,
    };
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    // Ten copies of each format, each the whole manual in a different order.
    for copy in 0..10 {
        let mut order = sections.clone();
        order.rotate_left(copy * sections.len() / 10);
        let mut docx = String::from(
            "<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\"><w:body>",
        );
        let mut odt = String::from(
            "<office:document-content xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\"><office:body><office:text>",
        );
        for (title, body) in &order {
            docx += &format!(
                "<w:p><w:pPr><w:pStyle w:val=\"Heading1\"/></w:pPr><w:r><w:t>{}</w:t></w:r></w:p>",
                esc(title)
            );
            odt += &format!("<text:h text:outline-level=\"1\">{}</text:h>", esc(title));
            for para in body.lines() {
                docx += &format!(
                    "<w:p><w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
                    esc(para)
                );
                odt += &format!("<text:p>{}</text:p>", esc(para));
            }
        }
        docx += "</w:body></w:document>";
        odt += "</office:text></office:body></office:document-content>";
        let opts = SimpleFileOptions::default();
        for (format, member, xml) in [
            ("docx", "word/document.xml", &docx),
            ("odt", "content.xml", &odt),
        ] {
            let path = dir.join(format!("manual-{copy}.{format}"));
            let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            z.start_file(member, opts).unwrap();
            z.write_all(xml.as_bytes()).unwrap();
            z.finish().unwrap();
            out.entry(format).or_default().push(path);
        }
        // EPUB: a chapter per section.
        let path = dir.join(format!("manual-{copy}.epub"));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        z.start_file(
            "mimetype",
            opts.compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        z.write_all(b"application/epub+zip").unwrap();
        z.start_file("META-INF/container.xml", opts).unwrap();
        z.write_all(b"<container><rootfiles><rootfile full-path=\"OEBPS/book.opf\"/></rootfiles></container>").unwrap();
        let mut manifest = String::new();
        let mut spine = String::new();
        for (i, (title, body)) in order.iter().enumerate() {
            manifest += &format!(
                "<item id=\"c{i}\" href=\"c{i}.xhtml\" media-type=\"application/xhtml+xml\"/>"
            );
            spine += &format!("<itemref idref=\"c{i}\"/>");
            z.start_file(format!("OEBPS/c{i}.xhtml"), opts).unwrap();
            let paras: String = body.lines().map(|p| format!("<p>{}</p>", esc(p))).collect();
            z.write_all(
                format!(
                    "<html><head><title>Bash</title></head><body><h1>{}</h1>{paras}</body></html>",
                    esc(title)
                )
                .as_bytes(),
            )
            .unwrap();
        }
        z.start_file("OEBPS/book.opf", opts).unwrap();
        z.write_all(
            format!("<package><manifest>{manifest}</manifest><spine>{spine}</spine></package>")
                .as_bytes(),
        )
        .unwrap();
        z.finish().unwrap();
        out.entry("epub").or_default().push(path);
    }
    // Notebooks: each stdlib module of the `json`, `email` and `asyncio` packages as a
    // markdown cell (its docstring) and code cells (its definitions).
    let stdlib = Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_default();
    for package in ["json", "email", "asyncio"] {
        let mut modules = Vec::new();
        find(&stdlib.join(package), &[".py"], &mut modules);
        modules.sort();
        for m in modules {
            let code = std::fs::read_to_string(&m).unwrap_or_default();
            let mut cells = vec![
                serde_json::json!({"cell_type": "markdown", "metadata": {}, "source": format!("# {}", m.display())}),
            ];
            for block in code.split("\n\n\n") {
                cells.push(serde_json::json!({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": null, "source": block}));
            }
            let nb = serde_json::json!({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells});
            let path = dir.join(format!(
                "{package}-{}.ipynb",
                m.file_stem().unwrap().to_string_lossy()
            ));
            std::fs::write(&path, serde_json::to_vec(&nb).unwrap()).unwrap();
            out.entry("notebook").or_default().push(path);
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() > 2 && args[1] == "--child" {
        let language = document::FORMATS
            .into_iter()
            .find(|f| *f == args[2])
            .expect("format");
        let list = std::fs::read_to_string(&args[3]).unwrap();
        let files: Vec<PathBuf> = list.lines().map(PathBuf::from).collect();
        child(language, &files);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let made = tempfile::tempdir().unwrap();
    let mut corpora: Vec<(&str, Vec<PathBuf>, &str)> = vec![
        ("pdf", pdfs(tmp.path()), "real: /usr/share/doc"),
        ("html", htmls(), "real: Rust std docs + /usr/share/doc"),
    ];
    let mut synthetic = synthetic(made.path());
    for format in ["docx", "odt", "epub", "notebook"] {
        corpora.push((
            format,
            synthetic.remove(format).unwrap_or_default(),
            "made from real text",
        ));
    }

    println!("## Extraction, one child process per format (release build)\n");
    println!(
        "| format | files | MB | s | MB/s | pages/s | failed | peak RSS MB | baseline in the same run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (format, files, what) in &corpora {
        if files.is_empty() {
            println!("| {format} | 0 | – | – | – | – | – | – | no files ({what}) |");
            continue;
        }
        let f = run_child(format, files);
        let mb = f.bytes as f64 / 1e6;
        let pages = if *format == "pdf" {
            format!("{:.0}", f.pages as f64 / f.secs)
        } else {
            "–".into()
        };
        let base = match baseline(format, files) {
            Some(b) if *format == "pdf" => {
                format!("pdftotext {:.2} MB/s (ours {:.2}×)", mb / b, b / f.secs)
            }
            Some(b) => format!(
                "Python html.parser {:.2} MB/s (ours {:.2}×)",
                mb / b,
                b / f.secs
            ),
            None => "–".into(),
        };
        println!(
            "| {format} ({what}) | {} | {mb:.1} | {:.2} | {:.2} | {pages} | {} | {:.0} | {base} |",
            f.files,
            f.secs,
            mb / f.secs,
            f.failed,
            f.rss
        );
    }

    println!("\n## Known-phrase recall on real manuals (phrases pdftotext puts on one page)\n");
    let manuals: Vec<PathBuf> = corpora[0]
        .1
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == "bashref.pdf" || n == "gnuplot.pdf" || n.starts_with("debian-faq")
        })
        .cloned()
        .collect();
    if manuals.is_empty() || Command::new("pdftotext").arg("-v").output().is_err() {
        println!("skipped: needs bash-doc, gnuplot-doc or debian-faq, and poppler-utils");
        return;
    }
    let index = tempfile::tempdir().unwrap();
    let docs = tempfile::tempdir().unwrap();
    for m in &manuals {
        std::fs::copy(m, docs.path().join(m.file_name().unwrap())).unwrap();
    }
    let html_manual = Path::new("/usr/share/doc/bash/bashref.html");
    if html_manual.exists() {
        std::fs::copy(html_manual, docs.path().join("bashref.html")).unwrap();
    }
    let engine = Engine::new(
        Arc::new(EdgeStore::open(index.path()).unwrap()),
        EngineConfig::default(),
    )
    .unwrap();
    engine
        .ingest_dir(
            None,
            docs.path(),
            &IngestDirOptions::default(),
            &CancellationToken::new(),
            &|_| {},
        )
        .unwrap();
    println!(
        "| manual | phrases | on the right page (text) | top-10 hit on the right page (search) | in the HTML edition (text) |"
    );
    println!("|---|---|---|---|---|");
    let html_words = std::fs::read(docs.path().join("bashref.html"))
        .ok()
        .and_then(|b| document::extract_here("html", &b, Limits::default()).ok())
        .map(|e| words(&e.text).join(" "));
    for m in &manuals {
        let name = m.file_name().unwrap().to_string_lossy().into_owned();
        let copy = docs.path().join(&name);
        let extracted =
            document::extract_here("pdf", &std::fs::read(&copy).unwrap(), Limits::default())
                .unwrap();
        let lines: Vec<&str> = extracted.text.lines().collect();
        let mut page_words: HashMap<u32, String> = HashMap::new();
        for s in &extracted.sections {
            let entry = page_words.entry(s.location.page.unwrap_or(0)).or_default();
            entry.push(' ');
            entry.push_str(&words(&lines[s.start..s.end].join("\n")).join(" "));
        }
        let phrases = phrases(m, 60);
        let (mut text_hits, mut search_hits, mut html_hits) = (0, 0, 0);
        for (phrase, page) in &phrases {
            if page_words
                .get(page)
                .is_some_and(|w| w.contains(phrase.as_str()))
            {
                text_hits += 1;
            }
            let hits = engine
                .search(&SearchRequest {
                    query: phrase.clone(),
                    limit: Some(10),
                    filter: SearchFilter {
                        path_prefix: Some(copy.clone()),
                        ..SearchFilter::default()
                    },
                    ..SearchRequest::default()
                })
                .map(|r| r.hits)
                .unwrap_or_default();
            if hits
                .iter()
                .any(|h| h.location.as_ref().and_then(|l| l.page) == Some(*page))
            {
                search_hits += 1;
            }
            if name == "bashref.pdf"
                && html_words
                    .as_ref()
                    .is_some_and(|w| w.contains(phrase.as_str()))
            {
                html_hits += 1;
            }
        }
        let n = phrases.len().max(1) as f64;
        let html = if name == "bashref.pdf" && html_words.is_some() {
            format!("{:.1} % (bashref.html)", 100.0 * html_hits as f64 / n)
        } else {
            "–".into()
        };
        println!(
            "| {name} | {} | {:.1} % | {:.1} % | {html} |",
            phrases.len(),
            100.0 * text_hits as f64 / n,
            100.0 * search_hits as f64 / n
        );
    }
}
