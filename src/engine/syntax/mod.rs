//! Definitions in code, found with tree-sitter: the grammars are linked in
//! ([`languages`]), each file is parsed once at ingest, and every definition becomes a
//! [`Symbol`] stored with the chunk that holds its first line.
//!
//! Kinds are LSP's `SymbolKind` names in camelCase (LSP 3.17 §`SymbolKind`), plus
//! `trait`, `type` and `macro`, which LSP lacks.

mod languages;

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, ParseOptions, Parser, QueryCursor, StreamingIterator};

pub use languages::grammar;

/// Files larger than this are not parsed (they keep line windows and have no symbols).
pub const MAX_PARSE_BYTES: usize = 8 << 20;

/// Longest a parse may take before it is given up (the file then has no symbols).
pub const PARSE_BUDGET: Duration = Duration::from_secs(3);

/// One definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Symbol {
    /// Its name as written.
    pub name: String,
    /// `function`, `method`, `class`, `struct`, `enum`, `interface`, `trait`, `type`,
    /// `module`, `constant`, `field`, `constructor`, `enumMember`, `macro`, …
    pub kind: String,
    /// First line of the definition, 1-based.
    pub line: u32,
    /// Last line of the definition, 1-based.
    pub end_line: u32,
    /// The enclosing definitions, outermost first, joined by `.` (`Outer.Inner`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The definition's first line, trimmed (at most 200 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// A declaration without a body (a C prototype): ranked after definitions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub declaration: bool,
}

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
}

/// The definitions in `text`, a file of `language` at `path`, in source order; empty for
/// a language Quarry does not parse, a file over [`MAX_PARSE_BYTES`] or a parse over
/// [`PARSE_BUDGET`]. A syntax error does not stop it: tree-sitter recovers, and the
/// definitions around the error are found.
pub fn symbols(language: &str, path: &str, text: &str) -> Vec<Symbol> {
    symbols_within(language, path, text, PARSE_BUDGET)
}

/// [`symbols`] with a parse allowed `budget` of wall time (`EngineConfig::parse_budget`).
pub fn symbols_within(language: &str, path: &str, text: &str, budget: Duration) -> Vec<Symbol> {
    let Some(grammar) = grammar(language, path) else {
        return Vec::new();
    };
    if text.len() > MAX_PARSE_BYTES {
        return Vec::new();
    }
    let tree = PARSER.with(|p| {
        let mut parser = p.borrow_mut();
        parser.set_language(&grammar.language).ok()?;
        let started = Instant::now();
        let mut over_budget = |_: &tree_sitter::ParseState| {
            if started.elapsed() > budget {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let bytes = text.as_bytes();
        parser.parse_with_options(
            &mut |i, _| bytes.get(i..).unwrap_or_default(),
            None,
            Some(ParseOptions::new().progress_callback(&mut over_budget)),
        )
    });
    let Some(tree) = tree else {
        return Vec::new();
    };
    let query = &grammar.query;
    let (Some(name_ix), names) = (query.capture_index_for_name("name"), query.capture_names())
    else {
        return Vec::new();
    };
    // (definition node, tag, name)
    let mut found: Vec<(Node, &str, String)> = Vec::new();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(query, tree.root_node(), text.as_bytes());
    while let Some(m) = matches.next() {
        let mut name = None;
        let mut def = None;
        for c in m.captures() {
            if c.index == name_ix {
                name = c.node.utf8_text(text.as_bytes()).ok();
            } else if let Some(tag) = names[c.index as usize].strip_prefix("definition.") {
                def = Some((c.node, tag));
            }
        }
        if let (Some(name), Some((node, tag))) = (name, def) {
            found.push((node, tag, name.to_owned()));
        }
    }
    // One symbol per definition node (a node can match the crate's and our pattern).
    found.sort_by_key(|(n, _, _)| (n.start_byte(), std::cmp::Reverse(n.end_byte())));
    found.dedup_by(|a, b| a.0.id() == b.0.id() || (a.0.range() == b.0.range() && a.2 == b.2));
    let extents: Vec<(Node, bool)> = found.iter().map(|(n, _, _)| extent(*n)).collect();
    // Enclosing definitions by a stack over the definitions in source order (each
    // extent starts after, or inside, the ones before it): linear in their number.
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by_key(|&i| {
        let o = extents[i].0;
        (o.start_byte(), std::cmp::Reverse(o.end_byte()))
    });
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); found.len()];
    let mut open: Vec<usize> = Vec::new();
    for &i in &order {
        let o = extents[i].0;
        while let Some(&top) = open.last() {
            let t = extents[top].0;
            if t.end_byte() >= o.end_byte() && t.range() != o.range() {
                break;
            }
            open.pop();
        }
        parents[i] = open.clone();
        open.push(i);
    }
    let mut out = Vec::with_capacity(found.len());
    for (i, (node, tag, name)) in found.iter().enumerate() {
        let (outer, declaration) = extents[i];
        let chain = &parents[i];
        let parent_kind = chain.last().map(|&p| {
            let (n, t, _) = &found[p];
            kind_of(t, n.kind(), None, "")
        });
        let container = (!chain.is_empty()).then(|| {
            chain
                .iter()
                .map(|&p| found[p].2.as_str())
                .collect::<Vec<_>>()
                .join(".")
        });
        let signature = outer
            .utf8_text(text.as_bytes())
            .ok()
            .and_then(|t| t.lines().next())
            .map(|l| l.trim().chars().take(200).collect::<String>())
            .filter(|l| !l.is_empty());
        let mut kind = kind_of(tag, node.kind(), parent_kind, name);
        if node.kind() == "function_declarator"
            && node
                .child_by_field_name("declarator")
                .is_some_and(|d| d.kind() == "qualified_identifier")
        {
            // C++ `int Shape::area() { … }`: a method defined outside its class.
            kind = "method";
        }
        if node.kind() == "type_spec" {
            // Go: what the type is.
            kind = match node.child_by_field_name("type").map(|t| t.kind()) {
                Some("struct_type") => "struct",
                Some("interface_type") => "interface",
                _ => "type",
            };
        }
        if kind == "constant" && language == "python" && name.chars().any(|c| c.is_lowercase()) {
            // Python has no constants: an upper-case module name is one by convention.
            kind = "variable";
        }
        out.push(Symbol {
            kind: kind.to_owned(),
            name: name.clone(),
            line: outer.start_position().row as u32 + 1,
            end_line: outer.end_position().row as u32 + 1,
            container,
            signature,
            declaration,
        });
    }
    out
}

/// The node a definition spans (a C declarator's whole function definition, a Python
/// definition with its decorators), and whether it is a declaration without a body.
fn extent(node: Node) -> (Node, bool) {
    match node.kind() {
        "function_declarator" => {
            let mut n = node;
            while let Some(p) = n.parent() {
                match p.kind() {
                    "function_definition" => return (p, false),
                    "declaration" | "field_declaration" => return (p, true),
                    "pointer_declarator" | "reference_declarator" | "parenthesized_declarator" => {
                        n = p
                    }
                    _ => return (node, false),
                }
            }
            (node, false)
        }
        "function_definition" | "class_definition" => match node.parent() {
            Some(p) if p.kind() == "decorated_definition" => (p, false),
            _ => (node, false),
        },
        _ => (node, false),
    }
}

/// The LSP kind of a definition tagged `tag` on a node of `node_kind` inside a
/// definition of `parent` kind.
fn kind_of(tag: &str, node_kind: &str, parent: Option<&str>, name: &str) -> &'static str {
    let in_type = matches!(
        parent,
        Some("class" | "struct" | "interface" | "trait" | "enum")
    );
    match tag {
        "class" => match node_kind {
            "struct_item" | "struct_specifier" | "union_item" => "struct",
            "enum_item" | "enum_specifier" | "enum_declaration" => "enum",
            "type_item" | "type_alias_declaration" => "type",
            "interface_declaration" => "interface",
            "trait_item" => "trait",
            _ => "class",
        },
        "function" | "method" => {
            if name == "__init__" || name == "constructor" || node_kind == "constructor_declaration"
            {
                "constructor"
            } else if in_type || (tag == "method" && parent != Some("module")) {
                "method"
            } else {
                "function"
            }
        }
        "constructor" => "constructor",
        "interface" => match node_kind {
            "trait_item" => "trait",
            _ => "interface",
        },
        "module" => "module",
        "macro" => "macro",
        "constant" => "constant",
        "field" => "field",
        "enum" => "enum",
        "enumMember" => "enumMember",
        "type" => match node_kind {
            "enum_specifier" => "enum",
            "type_spec" => "type",
            _ => "type",
        },
        "variable" => "variable",
        _ => "variable",
    }
}

#[cfg(test)]
mod tests;
