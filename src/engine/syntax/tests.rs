//! Every kind of every language on the committed fixtures (`tests/fixtures/symbols/`),
//! with its line.

use super::*;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/symbols")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// `(name, kind, line, container)` of the definitions in a fixture.
fn found(language: &str, file: &str) -> Vec<(String, String, u32, Option<String>)> {
    symbols(language, file, &fixture(file))
        .into_iter()
        .map(|s| (s.name, s.kind, s.line, s.container))
        .collect()
}

fn has(
    got: &[(String, String, u32, Option<String>)],
    name: &str,
    kind: &str,
    line: u32,
    container: Option<&str>,
) {
    assert!(
        got.iter()
            .any(|(n, k, l, c)| n == name && k == kind && *l == line && c.as_deref() == container),
        "no {kind} {name} at line {line} in {container:?}: {got:#?}"
    );
}

#[test]
fn python() {
    let got = found("python", "shapes.py");
    has(&got, "MAX_SIDES", "constant", 2, None);
    has(&got, "Shape", "class", 5, None);
    has(&got, "__init__", "constructor", 6, Some("Shape"));
    has(&got, "area", "method", 9, Some("Shape"));
    has(&got, "Meta", "class", 12, Some("Shape"));
    has(&got, "describe", "method", 13, Some("Shape.Meta"));
    // Decorated: the definition starts at its decorator.
    has(&got, "make_square", "function", 17, None);
    // A syntax error in the middle: what follows it is still found.
    has(&got, "after_the_error", "function", 26, None);
}

#[test]
fn rust() {
    let got = found("rust", "shapes.rs");
    has(&got, "MAX_SIDES", "constant", 1, None);
    has(&got, "Shape", "struct", 3, None);
    has(&got, "sides", "field", 4, Some("Shape"));
    has(&got, "Color", "enum", 7, None);
    has(&got, "Red", "enumMember", 8, Some("Color"));
    has(&got, "Area", "trait", 12, None);
    has(&got, "area", "method", 13, Some("Area"));
    has(&got, "new", "method", 17, None);
    has(&got, "Sides", "type", 22, None);
    has(&got, "geometry", "module", 24, None);
    has(&got, "perimeter", "function", 25, Some("geometry"));
    has(&got, "square", "macro", 30, None);
    has(&got, "make_square", "function", 34, None);
}

#[test]
fn javascript() {
    let got = found("javascript", "shapes.js");
    has(&got, "Shape", "class", 1, None);
    has(&got, "constructor", "constructor", 2, Some("Shape"));
    has(&got, "area", "method", 6, Some("Shape"));
    has(&got, "makeSquare", "function", 11, None);
    has(&got, "requestHandler", "function", 15, None);
}

#[test]
fn typescript_and_tsx() {
    let got = found("typescript", "shapes.ts");
    has(&got, "Sized", "interface", 1, None);
    has(&got, "Sides", "type", 5, None);
    has(&got, "Color", "enum", 7, None);
    has(&got, "Shape", "class", 12, None);
    has(&got, "constructor", "constructor", 13, Some("Shape"));
    has(&got, "size", "method", 15, Some("Shape"));
    has(&got, "makeSquare", "function", 20, None);
    let got = found("typescript", "widget.tsx");
    has(&got, "Widget", "function", 1, None);
    has(&got, "render", "method", 6, Some("Panel"));
}

#[test]
fn go() {
    let got = found("go", "shapes.go");
    has(&got, "MaxSides", "constant", 3, None);
    has(&got, "Shape", "struct", 5, None);
    has(&got, "Sized", "interface", 9, None);
    has(&got, "Size", "method", 13, None);
    has(&got, "MakeSquare", "function", 17, None);
}

#[test]
fn java() {
    let got = found("java", "Shapes.java");
    has(&got, "Sized", "interface", 3, None);
    has(&got, "Color", "enum", 7, None);
    has(&got, "Shape", "class", 9, None);
    has(&got, "sides", "field", 10, Some("Shape"));
    has(&got, "Shape", "constructor", 12, Some("Shape"));
    has(&got, "size", "method", 16, Some("Shape"));
}

#[test]
fn c_and_cpp() {
    let c = symbols("c", "shapes.c", &fixture("shapes.c"));
    let find = |name: &str, line: u32| c.iter().find(|s| s.name == name && s.line == line);
    assert_eq!(find("MAX_SIDES", 1).unwrap().kind, "constant");
    assert_eq!(find("SQUARE", 2).unwrap().kind, "macro");
    assert_eq!(find("shape", 4).unwrap().kind, "struct");
    assert_eq!(find("shape_t", 8).unwrap().kind, "type");
    assert_eq!(find("color", 10).unwrap().kind, "enum");
    // The prototype is a declaration; the definition spans its body.
    let proto = find("shape_area", 12).unwrap();
    assert!(proto.declaration, "{proto:?}");
    let def = find("shape_area", 14).unwrap();
    assert!(!def.declaration && def.end_line == 16, "{def:?}");
    assert_eq!(find("make_square", 18).unwrap().kind, "function");

    let got = found("cpp", "shapes.cpp");
    has(&got, "geometry", "module", 1, None);
    has(&got, "Shape", "class", 3, Some("geometry"));
    has(&got, "area", "method", 12, Some("geometry"));
    has(&got, "Point", "struct", 16, Some("geometry"));
    has(&got, "make_square", "function", 22, None);
}

#[test]
fn signatures_and_end_lines() {
    let s = symbols("python", "shapes.py", &fixture("shapes.py"));
    let area = s.iter().find(|s| s.name == "area").unwrap();
    assert_eq!(area.signature.as_deref(), Some("def area(self):"));
    assert_eq!(area.end_line, 10);
}

#[test]
fn unknown_languages_and_huge_files_have_none() {
    assert!(symbols("markdown", "a.md", "# Title\n").is_empty());
    let huge = "x = 1\n".repeat(MAX_PARSE_BYTES / 6 + 1);
    assert!(symbols("python", "a.py", &huge).is_empty());
}
