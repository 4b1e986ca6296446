//! The grammars linked into Quarry and the queries that find definitions in them: each
//! grammar crate's own `tags.scm` (`@definition.KIND` with `@name`), plus a few patterns
//! of ours for what those leave out (constants, constructors, Go types).

use std::sync::OnceLock;

use tree_sitter::{Language, Query};

/// A language Quarry parses.
pub struct Grammar {
    /// The grammar.
    pub language: Language,
    /// Definitions: the crate's tags query and ours.
    pub query: Query,
}

/// What each grammar adds to its crate's tags query.
const RUST_EXTRA: &str = r#"
(const_item name: (identifier) @name) @definition.constant
(static_item name: (identifier) @name) @definition.constant
(enum_variant name: (identifier) @name) @definition.enumMember
(field_declaration name: (field_identifier) @name) @definition.field
(function_signature_item name: (identifier) @name) @definition.method
"#;
const PYTHON_EXTRA: &str = "";
const JS_EXTRA: &str = r#"
(method_definition name: (property_identifier) @name (#eq? @name "constructor")) @definition.constructor
"#;
const TS_EXTRA: &str = r#"
(type_alias_declaration name: (type_identifier) @name) @definition.type
(enum_declaration name: (identifier) @name) @definition.enum
"#;
const GO_EXTRA: &str = r#"
(const_spec name: (identifier) @name) @definition.constant
"#;
const JAVA_EXTRA: &str = r#"
(constructor_declaration name: (identifier) @name) @definition.constructor
(enum_declaration name: (identifier) @name) @definition.enum
(field_declaration declarator: (variable_declarator name: (identifier) @name)) @definition.field
"#;
const C_EXTRA: &str = r#"
(preproc_def name: (identifier) @name) @definition.constant
(preproc_function_def name: (identifier) @name) @definition.macro
"#;
const CPP_EXTRA: &str = r#"
(namespace_definition name: (namespace_identifier) @name) @definition.module
(preproc_def name: (identifier) @name) @definition.constant
(preproc_function_def name: (identifier) @name) @definition.macro
"#;

fn build(language: Language, queries: &[&str]) -> Grammar {
    let source = queries.concat();
    // The queries are fixed at build time; a grammar they do not fit is a bug caught
    // by the unit tests, so failing here cannot depend on the input.
    let query = Query::new(&language, &source)
        .unwrap_or_else(|e| panic!("a definitions query does not fit its grammar: {e}"));
    Grammar { language, query }
}

macro_rules! grammar {
    ($name:ident, $lang:expr, $($q:expr),+) => {
        fn $name() -> &'static Grammar {
            static G: OnceLock<Grammar> = OnceLock::new();
            G.get_or_init(|| build($lang.into(), &[$($q),+]))
        }
    };
}

grammar!(
    rust,
    tree_sitter_rust::LANGUAGE,
    tree_sitter_rust::TAGS_QUERY,
    RUST_EXTRA
);
grammar!(
    python,
    tree_sitter_python::LANGUAGE,
    tree_sitter_python::TAGS_QUERY,
    PYTHON_EXTRA
);
grammar!(
    javascript,
    tree_sitter_javascript::LANGUAGE,
    tree_sitter_javascript::TAGS_QUERY,
    JS_EXTRA
);
grammar!(
    typescript,
    tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
    tree_sitter_javascript::TAGS_QUERY,
    tree_sitter_typescript::TAGS_QUERY,
    JS_EXTRA,
    TS_EXTRA
);
grammar!(
    tsx,
    tree_sitter_typescript::LANGUAGE_TSX,
    tree_sitter_javascript::TAGS_QUERY,
    tree_sitter_typescript::TAGS_QUERY,
    JS_EXTRA,
    TS_EXTRA
);
grammar!(
    go,
    tree_sitter_go::LANGUAGE,
    tree_sitter_go::TAGS_QUERY,
    GO_EXTRA
);
grammar!(
    java,
    tree_sitter_java::LANGUAGE,
    tree_sitter_java::TAGS_QUERY,
    JAVA_EXTRA
);
grammar!(
    c,
    tree_sitter_c::LANGUAGE,
    tree_sitter_c::TAGS_QUERY,
    C_EXTRA
);
grammar!(
    cpp,
    tree_sitter_cpp::LANGUAGE,
    tree_sitter_cpp::TAGS_QUERY,
    CPP_EXTRA
);

/// The grammar for a file of `language` (Quarry's language name) at `path`, if Quarry
/// parses that language.
pub fn grammar(language: &str, path: &str) -> Option<&'static Grammar> {
    Some(match language {
        "rust" => rust(),
        "python" => python(),
        "javascript" => javascript(),
        "typescript" if path.to_ascii_lowercase().ends_with(".tsx") => tsx(),
        "typescript" => typescript(),
        "go" => go(),
        "java" => java(),
        "c" => c(),
        "cpp" => cpp(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_fits_its_grammar() {
        for (lang, path) in [
            ("rust", "a.rs"),
            ("python", "a.py"),
            ("javascript", "a.js"),
            ("typescript", "a.ts"),
            ("typescript", "a.tsx"),
            ("go", "a.go"),
            ("java", "a.java"),
            ("c", "a.c"),
            ("cpp", "a.cpp"),
        ] {
            assert!(grammar(lang, path).is_some(), "{lang}");
        }
        assert!(grammar("markdown", "a.md").is_none());
    }
}
