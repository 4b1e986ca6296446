//! Language detection and chunking.
//!
//! Code and plain text: windows of [`ChunkParams::lines`] lines overlapping by
//! [`ChunkParams::overlap`], also cut at [`ChunkParams::max_bytes`]. Markdown: one
//! section per heading (headings inside code fences do not count), long sections
//! windowed the same way; every chunk of a section carries its heading path as context.

use std::path::Path;

/// One chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based position in the file's chunk list.
    pub index: usize,
    /// First line, 1-based.
    pub start_line: usize,
    /// Last line, 1-based, inclusive.
    pub end_line: usize,
    /// The lines, joined by `\n`.
    pub text: String,
    /// Extra text for retrieval only (Markdown heading path), not shown.
    pub context: String,
}

/// Chunking parameters.
#[derive(Debug, Clone, Copy)]
pub struct ChunkParams {
    /// Lines per window.
    pub lines: usize,
    /// Lines shared by consecutive windows.
    pub overlap: usize,
    /// Most bytes per chunk (a window is cut short at this size).
    pub max_bytes: usize,
}

impl Default for ChunkParams {
    fn default() -> Self {
        ChunkParams {
            lines: 40,
            overlap: 8,
            max_bytes: 6 * 1024,
        }
    }
}

/// Language of a file from its name, `None` for known binary formats.
pub fn language_of(path: &Path) -> Option<&'static str> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match name.as_str() {
        "makefile" | "gnumakefile" => return Some("make"),
        "dockerfile" => return Some("dockerfile"),
        "cmakelists.txt" => return Some("cmake"),
        _ => {}
    }
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    Some(match ext.as_str() {
        "rs" => "rust",
        "py" | "pyi" | "pyw" => "python",
        "md" | "markdown" | "mdx" => "markdown",
        "rst" => "restructuredtext",
        "txt" | "text" | "" => "text",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => "cpp",
        "go" => "go",
        "java" => "java",
        "kt" | "kts" => "kotlin",
        "js" | "mjs" | "cjs" | "jsx" => "javascript",
        "ts" | "tsx" | "mts" | "cts" => "typescript",
        "rb" => "ruby",
        "php" => "php",
        "cs" => "csharp",
        "swift" => "swift",
        "scala" => "scala",
        "sh" | "bash" | "zsh" => "shell",
        "ps1" => "powershell",
        "lua" => "lua",
        "pl" | "pm" => "perl",
        "r" => "r",
        "sql" => "sql",
        "html" | "htm" | "xhtml" => "html",
        "pdf" => "pdf",
        "docx" => "docx",
        "odt" => "odt",
        "epub" => "epub",
        "ipynb" => "notebook",
        "css" | "scss" | "less" => "css",
        "xml" | "xsd" | "xsl" | "svg" => "xml",
        "json" | "jsonl" => "json",
        "yaml" | "yml" => "yaml",
        "toml" => "toml",
        "ini" | "cfg" | "conf" => "ini",
        "proto" => "protobuf",
        "tex" => "latex",
        "csv" | "tsv" => "csv",
        "png" | "jpg" | "jpeg" | "gif" | "bmp" | "ico" | "webp" | "zip" | "gz" | "tgz" | "bz2"
        | "xz" | "zst" | "7z" | "tar" | "jar" | "class" | "so" | "dll" | "dylib" | "exe" | "o"
        | "a" | "pyc" | "pyo" | "whl" | "woff" | "woff2" | "ttf" | "otf" | "mp3" | "mp4"
        | "wav" | "ogg" | "flac" | "mov" | "avi" | "sqlite" | "db" | "bin" | "wasm" => {
            return None;
        }
        _ => "text",
    })
}

/// Splits `text` into chunks.
pub fn chunk(text: &str, language: &str, params: &ChunkParams) -> Vec<Chunk> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    if language == "markdown" {
        for (start, end, heading) in markdown_sections(&lines) {
            windows(&lines, start, end, &heading, params, &mut out);
        }
    } else {
        windows(&lines, 0, lines.len(), "", params, &mut out);
    }
    out
}

/// A document's text chunked within its sections: each `(start, end, context)` line
/// range (0-based, `end` exclusive) is windowed on its own, so no chunk spans two pages
/// or headings. Each chunk comes with the index of its section.
pub fn chunk_sections(
    text: &str,
    sections: &[(usize, usize, String)],
    params: &ChunkParams,
) -> Vec<(usize, Chunk)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut owner = Vec::new();
    for (i, (start, end, context)) in sections.iter().enumerate() {
        let end = (*end).min(lines.len());
        if *start < end {
            windows(&lines, *start, end, context, params, &mut out);
        }
        owner.resize(out.len(), i);
    }
    owner.into_iter().zip(out).collect()
}

/// Code chunked along its definitions (`symbols`, from `syntax::symbols`): a definition
/// that fits in [`ChunkParams::lines`] is one piece, a larger one is cut at its nested
/// definitions (a class at its methods), and the code between definitions is a piece of
/// its own; consecutive pieces are then merged while they fit, and a piece still too
/// large is windowed as usual. Each chunk's context is the path of definitions its
/// first line is in (`class Shape > method area`).
pub fn chunk_code(
    text: &str,
    symbols: &[crate::engine::syntax::Symbol],
    params: &ChunkParams,
) -> Vec<Chunk> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pieces = Vec::new();
    pieces_of(0, lines.len(), symbols, None, "", params, &mut pieces);
    let bytes = |a: usize, b: usize| lines[a..b].iter().map(|l| l.len() + 1).sum::<usize>();
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (start, end, context) in pieces {
        match &mut current {
            Some(c) if end - c.0 <= params.lines && bytes(c.0, end) <= params.max_bytes => {
                c.1 = end;
            }
            _ => {
                if let Some((s, e, ctx)) = current.take() {
                    windows(&lines, s, e, &ctx, params, &mut out);
                }
                current = Some((start, end, context));
            }
        }
    }
    if let Some((s, e, ctx)) = current {
        windows(&lines, s, e, &ctx, params, &mut out);
    }
    out
}

/// The pieces of lines `[start, end)` (0-based) at the nesting level `container`.
#[allow(clippy::too_many_arguments)]
fn pieces_of(
    start: usize,
    end: usize,
    symbols: &[crate::engine::syntax::Symbol],
    container: Option<&str>,
    context: &str,
    params: &ChunkParams,
    out: &mut Vec<(usize, usize, String)>,
) {
    let mut defs: Vec<&crate::engine::syntax::Symbol> = symbols
        .iter()
        .filter(|s| s.container.as_deref() == container && !s.declaration)
        .filter(|s| (s.line as usize) > start && (s.line as usize) <= end)
        .collect();
    defs.sort_by_key(|s| s.line);
    let mut at = start;
    for d in defs {
        let (s, e) = (d.line as usize - 1, (d.end_line as usize).min(end));
        if s < at || e <= s {
            continue;
        }
        if s > at {
            out.push((at, s, context.to_owned()));
        }
        let path = if context.is_empty() {
            format!("{} {}", d.kind, d.name)
        } else {
            format!("{context} > {} {}", d.kind, d.name)
        };
        if e - s > params.lines {
            let inner = match container {
                Some(c) => format!("{c}.{}", d.name),
                None => d.name.clone(),
            };
            pieces_of(s, e, symbols, Some(&inner), &path, params, out);
        } else {
            out.push((s, e, path));
        }
        at = e;
    }
    if at < end {
        out.push((at, end, context.to_owned()));
    }
}

/// `(first line, end line exclusive, heading path)` of each section, 0-based.
fn markdown_sections(lines: &[&str]) -> Vec<(usize, usize, String)> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut start = 0;
    let mut context = String::new();
    let mut fence: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let level = trimmed.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&level) && trimmed[level..].starts_with([' ', '\t']) {
            if i > start {
                sections.push((start, i, context.clone()));
            }
            start = i;
            path.retain(|(l, _)| *l < level);
            path.push((level, trimmed[level..].trim().to_owned()));
            context = path
                .iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" / ");
        }
    }
    if lines.len() > start {
        sections.push((start, lines.len(), context));
    }
    sections
}

fn windows(
    lines: &[&str],
    start: usize,
    end: usize,
    context: &str,
    params: &ChunkParams,
    out: &mut Vec<Chunk>,
) {
    let step_min = 1;
    let mut s = start;
    while s < end {
        // Skip leading blank lines of a window.
        while s < end && lines[s].trim().is_empty() {
            s += 1;
        }
        if s >= end {
            break;
        }
        let mut e = s;
        let mut bytes = 0;
        while e < end && e - s < params.lines {
            let len = lines[e].len() + 1;
            if e > s && bytes + len > params.max_bytes {
                break;
            }
            bytes += len;
            e += 1;
        }
        let mut text = lines[s..e].join("\n");
        if text.len() > params.max_bytes {
            // One enormous line: keep its head.
            let mut cut = params.max_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        out.push(Chunk {
            index: out.len(),
            start_line: s + 1,
            end_line: e,
            text,
            context: context.to_owned(),
        });
        if e >= end {
            break;
        }
        s = (e.saturating_sub(params.overlap)).max(s + step_min);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_and_cover_every_line() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let p = ChunkParams {
            lines: 40,
            overlap: 10,
            max_bytes: 1 << 20,
        };
        let chunks = chunk(&text, "python", &p);
        let ranges: Vec<(usize, usize)> =
            chunks.iter().map(|c| (c.start_line, c.end_line)).collect();
        assert_eq!(ranges, [(1, 40), (31, 70), (61, 100)]);
        assert!(chunks[0].text.starts_with("line 1\n"));
        assert!(chunks[2].text.ends_with("line 100"));
    }

    #[test]
    fn markdown_sections_follow_headings_not_fenced_ones() {
        let md = "intro\n# Title\ntext\n```\n# not a heading\n```\n## Sub\nmore\n";
        let chunks = chunk(md, "markdown", &ChunkParams::default());
        let got: Vec<(usize, usize, &str)> = chunks
            .iter()
            .map(|c| (c.start_line, c.end_line, c.context.as_str()))
            .collect();
        assert_eq!(got, [(1, 1, ""), (2, 6, "Title"), (7, 8, "Title / Sub")]);
    }

    #[test]
    fn chunks_are_cut_at_max_bytes() {
        // 40 lines of 1 KiB: the default window would be 40 KiB; it is cut at 6 KiB,
        // and a single line longer than that is cut inside the line, on a char boundary.
        let line = "é".repeat(511) + "\n";
        let text: String = (0..40).map(|_| line.clone()).collect();
        let p = ChunkParams::default();
        let chunks = chunk(&text, "text", &p);
        assert!(chunks.len() > 1);
        assert!(
            chunks.iter().all(|c| c.text.len() <= p.max_bytes),
            "{:?}",
            chunks.iter().map(|c| c.text.len()).collect::<Vec<_>>()
        );
        assert_eq!(chunks.last().unwrap().end_line, 40);
        let long = "x".repeat(20 * 1024);
        let chunks = chunk(&long, "text", &p);
        assert!(chunks.iter().all(|c| c.text.len() <= p.max_bytes));
        assert_eq!(chunks[0].start_line, 1);
    }

    #[test]
    fn languages() {
        assert_eq!(language_of(Path::new("a/b.rs")), Some("rust"));
        assert_eq!(language_of(Path::new("README")), Some("text"));
        assert_eq!(language_of(Path::new("x.PNG")), None);
        assert_eq!(language_of(Path::new("Makefile")), Some("make"));
    }

    #[test]
    fn code_is_cut_at_definitions_and_small_ones_merged() {
        // Two small functions, then a class of 60 lines with three methods.
        let mut text =
            String::from("import os\n\ndef a():\n    return 1\n\ndef b():\n    return 2\n\n");
        text.push_str("class Big:\n    x = 1\n");
        for m in ["one", "two", "three"] {
            text.push_str(&format!("    def {m}(self):\n"));
            for i in 0..18 {
                text.push_str(&format!("        v{i} = {i}\n"));
            }
        }
        let symbols = crate::engine::syntax::symbols("python", "x.py", &text);
        let chunks = chunk_code(&text, &symbols, &ChunkParams::default());
        // The imports and both small functions merge into one chunk; the class is cut at
        // its methods, none of which straddles two chunks.
        assert_eq!(chunks[0].start_line, 1);
        assert!(chunks[0].text.contains("def b"), "{chunks:#?}");
        for m in ["one", "two", "three"] {
            let holder: Vec<_> = chunks
                .iter()
                .filter(|c| c.text.contains(&format!("def {m}")))
                .collect();
            assert_eq!(holder.len(), 1, "{m}: {chunks:#?}");
            let c = holder[0];
            assert!(c.text.contains("v17 = 17"), "{m} is whole: {c:#?}");
        }
        assert!(
            chunks
                .iter()
                .any(|c| c.context.starts_with("class Big > method")),
            "{chunks:#?}"
        );
        // Every line is in some chunk.
        let covered: std::collections::BTreeSet<usize> = chunks
            .iter()
            .flat_map(|c| c.start_line..=c.end_line)
            .collect();
        let n = text.lines().count();
        assert!((1..=n).all(|l| covered.contains(&l) || text.lines().nth(l - 1).unwrap().trim().is_empty()));
    }
}
