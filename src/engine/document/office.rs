//! DOCX (WordprocessingML, `word/document.xml`) and ODT (OpenDocument Text,
//! `content.xml`): paragraphs become lines, headings start sections. DOCX headings are
//! paragraphs styled `Title`/`Heading N` or with an outline level (ECMA-376 Part 1
//! §17.3.1.20); ODT headings are `<text:h text:outline-level="N">` (OpenDocument 1.3
//! §5.1.2).

use super::archive::Archive;
use super::headings::Headings;
use super::xml::{self, Node, attribute, local};
use super::{Location, TextBuilder};

/// Extracts a DOCX file into `b`.
///
/// Errors: not a zip archive, or without `word/document.xml`.
pub(super) fn extract_docx(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let mut archive = open(bytes, "DOCX", b)?;
    let xml = part(&mut archive, "word/document.xml", "DOCX")?;
    let mut doc = Outline::default();
    // The open paragraph: its heading level once its style is known, and its text when
    // it is a heading (body text goes straight to the builder).
    let mut level: Option<u8> = None;
    let mut heading = String::new();
    let mut in_text = false;
    let walked = xml::walk(xml, b, |node, b| match node {
        Node::Open { tag, empty } => match local(tag) {
            "p" if !empty => {
                level = None;
                heading.clear();
            }
            "pStyle" => level = attribute(tag, "val").and_then(|v| style_level(&v)),
            "outlineLvl" => {
                level = attribute(tag, "val")
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|l| *l < 9)
                    .map(|l| l + 1)
                    .or(level);
            }
            "t" if !empty => in_text = true,
            "tab" | "br" | "cr" => {
                if level.is_some() {
                    heading.push(' ');
                } else {
                    b.text(" ");
                }
            }
            _ => {}
        },
        Node::Close(name) => match name {
            "t" => in_text = false,
            "p" => {
                if let Some(l) = level.take() {
                    doc.heading(l, &heading, b);
                }
                b.block();
            }
            _ => {}
        },
        Node::Text(t) if in_text => {
            if level.is_some() {
                if heading.len() < 4096 {
                    heading.push_str(t);
                }
            } else {
                b.text(t);
            }
        }
        Node::Text(_) => {}
    });
    finish(walked, &archive, b)
}

/// Extracts an ODT file into `b`.
///
/// Errors: not a zip archive, or without `content.xml`.
pub(super) fn extract_odt(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let mut archive = open(bytes, "ODT", b)?;
    let xml = part(&mut archive, "content.xml", "ODT")?;
    let mut doc = Outline::default();
    // Depth inside text paragraphs/headings, and the open heading (level, text).
    let mut depth = 0u32;
    let mut open: Option<(u8, String)> = None;
    let walked = xml::walk(xml, b, |node, b| match node {
        Node::Open { tag, empty } => match local(tag) {
            "h" if !empty => {
                let l = attribute(tag, "outline-level")
                    .and_then(|v| v.parse::<u8>().ok())
                    .unwrap_or(1)
                    .clamp(1, 10);
                open = Some((l, String::new()));
                depth += 1;
            }
            "p" if !empty => depth += 1,
            "s" | "tab" | "line-break" if depth > 0 => match &mut open {
                Some((_, text)) => text.push(' '),
                None => b.text(" "),
            },
            _ => {}
        },
        Node::Close(name) => match name {
            "h" => {
                depth = depth.saturating_sub(1);
                if let Some((l, text)) = open.take() {
                    doc.heading(l, &text, b);
                }
                b.block();
            }
            "p" => {
                depth = depth.saturating_sub(1);
                if open.is_none() {
                    b.block();
                }
            }
            _ => {}
        },
        Node::Text(t) if depth > 0 => match &mut open {
            Some((_, text)) if text.len() < 4096 => text.push_str(t),
            Some(_) => {}
            None => b.text(t),
        },
        Node::Text(_) => {}
    });
    finish(walked, &archive, b)
}

fn open<'a>(bytes: &'a [u8], format: &str, b: &mut TextBuilder) -> Result<Archive<'a>, String> {
    Archive::open(bytes, b).map_err(|e| format!("not a {format} file: {e}"))
}

/// The archive member `name` of an office file, inflating as it is read.
fn part<'r>(
    archive: &'r mut Archive<'_>,
    name: &str,
    format: &str,
) -> Result<Box<dyn std::io::BufRead + 'r>, String> {
    let damage = archive
        .damage()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    match archive.reader(name) {
        Some(r) => r,
        None => Err(format!("not a {format} file: no {name}{damage}")),
    }
}

/// The outcome of walking a part: a limit passed while inflating, or damage, stops `b`
/// with its reason (and replaces the read error the limit caused).
fn finish(
    walked: Result<(), String>,
    archive: &Archive<'_>,
    b: &mut TextBuilder,
) -> Result<(), String> {
    if let Some(reason) = archive.failure() {
        b.stop(reason.clone());
        return Err(reason);
    }
    if let Some(d) = archive.damage() {
        b.stop(d.to_owned());
    }
    walked
}

/// Heading level of a DOCX paragraph style id: `Title` 0 (above every heading),
/// `HeadingN` N (`Heading1`, `heading 2`, …); `None` for other styles.
fn style_level(style: &str) -> Option<u8> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    if lower == "title" {
        return Some(0);
    }
    lower
        .strip_prefix("heading")
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| (1..=9).contains(n))
}

/// A document's headings, each also written as a line of its text.
#[derive(Default)]
pub(super) struct Outline {
    open: Headings,
}

impl Outline {
    /// A heading of `level` with `text`: it starts a section under its heading path,
    /// and is itself written as a line of the text.
    pub(super) fn heading(&mut self, level: u8, text: &str, b: &mut TextBuilder) {
        let Some(title) = self.open.enter(usize::from(level), text) else {
            return;
        };
        b.locate(Location {
            heading: self.open.path(),
            ..Location::default()
        });
        b.text(&title);
        b.block();
    }
}
