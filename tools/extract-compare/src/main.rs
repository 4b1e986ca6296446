//! Candidate extractors on the same files, each file in a child process (for its peak
//! RSS): throughput, and word recall against poppler's `pdftotext` (PDF) or against the
//! tag-stripped text (HTML). See Cargo.toml for the commands.

use std::cell::RefCell;
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

fn words(s: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for w in s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2) {
        *m.entry(w.to_lowercase()).or_insert(0) += 1;
    }
    m
}

/// Share of the reference's words (with multiplicity) that `got` has.
fn recall(reference: &str, got: &str) -> f64 {
    let r = words(reference);
    let g = words(got);
    let total: usize = r.values().sum();
    let hit: usize = r.iter().map(|(w, n)| (*n).min(*g.get(w).unwrap_or(&0))).sum();
    hit as f64 / total.max(1) as f64
}

fn peak_rss_mb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// html5ever's tokenizer alone, character tokens collected (what Quarry's walker builds
/// on).
fn html5ever_text(bytes: &[u8]) -> String {
    use html5ever::tendril::StrTendril;
    use html5ever::tokenizer::{BufferQueue, Token, TokenSink, TokenSinkResult, Tokenizer};
    struct Sink(RefCell<String>);
    impl TokenSink for Sink {
        type Handle = ();
        fn process_token(&self, token: Token, _: u64) -> TokenSinkResult<()> {
            if let Token::CharacterTokens(t) = token {
                self.0.borrow_mut().push_str(&t);
            }
            TokenSinkResult::Continue
        }
    }
    let tok = Tokenizer::new(Sink(RefCell::new(String::new())), Default::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(&String::from_utf8_lossy(bytes)));
    let _ = tok.feed(&queue);
    tok.end();
    tok.sink.0.into_inner()
}

/// One candidate on one file: (pages, text).
fn run(candidate: &str, bytes: &[u8]) -> Result<(usize, String), String> {
    Ok(match candidate {
        "lopdf" => {
            let doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
            let pages = doc.get_pages();
            let mut out = String::new();
            for n in pages.keys() {
                out.push_str(&doc.extract_text(&[*n]).unwrap_or_default());
                out.push('\x0c');
            }
            (pages.len(), out)
        }
        "pdf-extract" => {
            let pages = pdf_extract::extract_text_from_mem_by_pages(bytes).map_err(|e| e.to_string())?;
            (pages.len(), pages.join("\x0c"))
        }
        "pdf_oxide" => {
            let doc = pdf_oxide::PdfDocument::from_bytes(bytes.to_vec()).map_err(|e| e.to_string())?;
            let n = doc.page_count().map_err(|e| e.to_string())?;
            let mut out = String::new();
            for i in 0..n {
                out.push_str(&doc.extract_text(i).unwrap_or_default());
                out.push('\x0c');
            }
            (n, out)
        }
        "html2text" => (1, html2text::from_read(bytes, 100).map_err(|e| e.to_string())?),
        "html5ever-tokenizer" => (1, html5ever_text(bytes)),
        other => return Err(format!("unknown candidate {other}")),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--child" {
        let bytes = std::fs::read(&args[3]).expect("file");
        let t = Instant::now();
        match run(&args[2], &bytes) {
            Ok((pages, text)) => {
                let secs = t.elapsed().as_secs_f64();
                std::fs::write(format!("{}.{}.txt", args[3], args[2]), &text).ok();
                println!("{secs} {pages} {}", peak_rss_mb());
            }
            Err(e) => println!("error {e}"),
        }
        return;
    }
    let format = args.get(1).map(String::as_str).unwrap_or("");
    let candidates: &[&str] = match format {
        "pdf" => &["lopdf", "pdf-extract", "pdf_oxide"],
        "html" => &["html5ever-tokenizer", "html2text"],
        _ => {
            eprintln!("usage: extract-compare pdf|html FILE…");
            std::process::exit(2);
        }
    };
    println!("| candidate | file | MB/s | pages/s | word recall | peak RSS MB |");
    println!("|---|---|---|---|---|---|");
    let tmp = std::env::temp_dir().join(format!("extract-compare-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for file in &args[2..] {
        let bytes = std::fs::read(file).expect("file");
        let name = std::path::Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
        let copy = tmp.join(&name);
        std::fs::write(&copy, &bytes).unwrap();
        let reference = match format {
            "pdf" => Command::new("pdftotext")
                .arg(file)
                .arg("-")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        for c in candidates {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--child", c])
                .arg(&copy)
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !out.status.success() || line.starts_with("error") {
                println!("| {c} | {name} | failed: {line} {} |  |  |  |", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
                continue;
            }
            let f: Vec<&str> = line.split(' ').collect();
            let secs: f64 = f[0].parse().unwrap();
            let pages: f64 = f[1].parse().unwrap();
            let text = std::fs::read_to_string(format!("{}.{c}.txt", copy.display())).unwrap_or_default();
            // HTML: against the tokenizer's text (every character outside tags).
            let reference = if format == "html" {
                std::fs::read_to_string(format!("{}.html5ever-tokenizer.txt", copy.display())).unwrap_or_default()
            } else {
                reference.clone()
            };
            let mb = bytes.len() as f64 / 1e6;
            let pages = if format == "pdf" { format!("{:.0}", pages / secs) } else { "–".into() };
            println!(
                "| {c} | {name} | {:.2} | {pages} | {:.3} | {} |",
                mb / secs,
                recall(&reference, &text),
                f[2]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
