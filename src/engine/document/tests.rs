//! Extraction on the committed fixtures (`tests/fixtures/documents`, made by its
//! `generate.py`) and on hostile input made here.

use std::time::{Duration, Instant};

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/documents/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The location of the line holding `phrase`.
fn location_of<'e>(e: &'e Extracted, phrase: &str) -> &'e Location {
    let line = e
        .text
        .lines()
        .position(|l| l.contains(phrase))
        .unwrap_or_else(|| panic!("{phrase:?} not in:\n{}", e.text));
    let s = e
        .sections
        .iter()
        .find(|s| s.start <= line && line < s.end)
        .unwrap_or_else(|| panic!("line {line} in no section: {:?}", e.sections));
    &s.location
}

fn ok(language: &str, bytes: &[u8]) -> Extracted {
    extract_here(language, bytes, Limits::default()).unwrap()
}

fn heading(h: &str) -> Location {
    Location {
        heading: Some(h.into()),
        ..Location::default()
    }
}

#[test]
fn pdf_pages_and_outline() {
    let e = ok("pdf", &fixture("sample.pdf"));
    assert_eq!(e.partial, None);
    let l = location_of(&e, "quartz lantern protocol");
    assert_eq!(l.page, Some(2));
    assert_eq!(l.heading.as_deref(), Some("Installing"));
    assert_eq!(location_of(&e, "amber falcon").page, Some(3));
    // Sections cover every line, in order.
    assert_eq!(e.sections.len(), 3);
    assert_eq!(e.sections[0].start, 0);
    assert!(e.sections.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(e.sections[2].end, e.text.lines().count());
}

#[test]
fn pdf_with_a_broken_xref_is_recovered() {
    let e = ok("pdf", &fixture("broken-xref.pdf"));
    assert_eq!(location_of(&e, "amber falcon").page, Some(3));
}

#[test]
fn encrypted_and_fake_pdfs_are_refused_with_the_reason() {
    let err = extract_here("pdf", &fixture("encrypted.pdf"), Limits::default()).unwrap_err();
    assert!(err.0.contains("encrypted PDF"), "{err}");
    let err = extract_here("pdf", &fixture("not-really.pdf"), Limits::default()).unwrap_err();
    assert!(err.0.contains("unreadable PDF"), "{err}");
}

#[test]
fn html_is_text_under_its_headings() {
    let e = ok("html", &fixture("sample.html"));
    for hidden in [
        "scriptMarker",
        "font-family",
        "<p>",
        "&amp;",
        "hidden-style-marker",
    ] {
        assert!(!e.text.contains(hidden), "{hidden} in {}", e.text);
    }
    assert!(e.text.contains("basics & more"), "{}", e.text);
    assert_eq!(
        *location_of(&e, "velvet_harbor option"),
        heading("User guide > Configuration")
    );
    assert_eq!(
        *location_of(&e, "crimson meadow"),
        heading("User guide > Configuration > Advanced settings")
    );
    assert_eq!(
        *location_of(&e, "silent glacier"),
        heading("User guide > Errors")
    );
    // <pre> keeps its lines.
    assert!(e.text.contains("    \"velvet_harbor\": 3,"), "{}", e.text);
}

#[test]
fn html_nested_100k_deep_and_one_long_line() {
    let deep = format!(
        "{}deep text{}",
        "<div>".repeat(100_000),
        "</div>".repeat(100_000)
    );
    let e = ok("html", deep.as_bytes());
    assert_eq!(e.text, "deep text");
    // 2 MB of words on one line become lines near WRAP characters.
    let words = "word ".repeat(400_000);
    let e = ok("html", format!("<p>{words}</p>").as_bytes());
    let longest = e.text.lines().map(|l| l.chars().count()).max().unwrap();
    // A word split between two pieces fed to the tokenizer is glued, never broken.
    assert!(
        longest <= builder::WRAP + "word".len(),
        "{longest}: {:?}",
        e.text.lines().find(|l| l.chars().count() == longest)
    );
    assert_eq!(e.text.split_whitespace().count(), 400_000);
}

#[test]
fn docx_and_odt_headings() {
    let e = ok("docx", &fixture("sample.docx"));
    assert_eq!(
        *location_of(&e, "tidewater sextant"),
        heading("Field report > Methods > Equipment")
    );
    assert_eq!(
        *location_of(&e, "heron count rose by a third & held"),
        heading("Field report > Results")
    );
    assert!(!e.text.contains("PAGEREF"), "field codes are not text");
    assert!(e.text.contains("Field result"));

    let e = ok("odt", &fixture("sample.odt"));
    assert_eq!(
        *location_of(&e, "emerald trickle"),
        heading("Garden plan > Watering")
    );
    assert!(e.text.contains("Use the drip line"), "{}", e.text);
    assert_eq!(*location_of(&e, "saffron pumpkins"), heading("Harvest"));
}

#[test]
fn epub_chapters_and_a_truncated_one() {
    let e = ok("epub", &fixture("sample.epub"));
    assert_eq!(e.partial, None);
    let l = location_of(&e, "basalt pier");
    assert_eq!(l.chapter.as_deref(), Some("Storm Night"));
    assert_eq!(l.heading.as_deref(), Some("Storm Night > Midnight"));
    assert_eq!(
        location_of(&e, "lost lantern").chapter.as_deref(),
        Some("Morning")
    );
    assert!(
        !e.text.contains("Contents"),
        "the navigation document is not a chapter"
    );

    let e = ok("epub", &fixture("truncated.epub"));
    let partial = e.partial.clone().expect("partial");
    assert!(partial.contains("damaged archive"), "{partial}");
    assert_eq!(
        location_of(&e, "basalt pier").chapter.as_deref(),
        Some("Storm Night")
    );
}

#[test]
fn notebook_cells_without_outputs() {
    let e = ok("notebook", &fixture("sample.ipynb"));
    assert!(!e.text.contains("output marker"));
    let l = location_of(&e, "orchard.csv");
    assert_eq!(
        (l.cell, l.heading.as_deref()),
        (Some(2), Some("Loading data"))
    );
    let l = location_of(&e, "clean = [r for r in rows if r[2]]");
    assert_eq!(
        (l.cell, l.heading.as_deref()),
        (Some(4), Some("Loading data > Cleaning"))
    );
    let err = extract_here("notebook", &fixture("deep.ipynb"), Limits::default()).unwrap_err();
    assert!(err.0.contains("not a Jupyter notebook"), "{err}");
}

#[test]
fn deep_and_broken_office_files() {
    let e = ok("docx", &fixture("deep.docx"));
    assert!(e.text.contains("walrus clause"));
    let err = extract_here("docx", &fixture("broken.docx"), Limits::default()).unwrap_err();
    assert!(err.0.starts_with("not a DOCX file"), "{err}");
    let err = extract_here("odt", &fixture("sample.docx"), Limits::default()).unwrap_err();
    assert!(err.0.contains("no content.xml"), "{err}");
}

#[test]
fn a_zip_bomb_stops_at_the_inflate_budget() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "word/document.xml",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(b"<w:document><w:body><w:p><w:r><w:t>bomb head</w:t></w:r></w:p>")
        .unwrap();
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..20 {
        zip.write_all(&spaces).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    assert!(bytes.len() < 200_000, "{} bytes", bytes.len());
    let limits = Limits {
        max_inflated_bytes: 8 << 20,
        ..Limits::default()
    };
    // Read as a stream: what came before the budget ran out is kept, and named partial.
    let e = extract_here("docx", &bytes, limits).unwrap();
    assert_eq!(e.text, "bomb head");
    let partial = e.partial.unwrap();
    assert!(partial.contains("inflates beyond 8 MiB"), "{partial}");
    // Within the budget, the 20 MiB text node is refused before it is held whole.
    let e = extract_here("docx", &bytes, Limits::default()).unwrap();
    assert_eq!(e.text, "bomb head");
    let partial = e.partial.unwrap();
    assert!(
        partial.contains("longer than 16 MiB without markup"),
        "{partial}"
    );
}

#[test]
fn text_and_time_limits_keep_what_came_before() {
    let html = "<p>alpha beta gamma</p>".repeat(200_000);
    let limits = Limits {
        max_text_bytes: 100_000,
        ..Limits::default()
    };
    let e = extract_here("html", html.as_bytes(), limits).unwrap();
    assert!(e.text.len() <= 100_000 && e.text.len() > 90_000);
    assert!(e.partial.unwrap().contains("left out"));

    let limits = Limits {
        time_budget: Duration::ZERO,
        ..Limits::default()
    };
    let started = Instant::now();
    let e = extract_here("html", html.as_bytes(), limits).unwrap();
    assert!(e.partial.unwrap().contains("time budget"));
    assert!(e.text.len() < html.len() / 10);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_panic_is_contained_and_a_hang_given_up() {
    let err = contained("test", Duration::from_secs(5), || {
        panic!("boom in extractor")
    })
    .unwrap_err();
    assert_eq!(err.0, "extraction panicked: boom in extractor");
    let err = contained("test", Duration::from_millis(50), || {
        std::thread::sleep(Duration::from_secs(2));
        Ok(Extracted::default())
    })
    .unwrap_err();
    assert!(err.0.contains("given up"), "{err}");
}
