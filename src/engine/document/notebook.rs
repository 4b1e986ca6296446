//! Jupyter notebooks (nbformat 4, and 3's worksheets): markdown and code cells, outputs
//! left out. Each cell is a section (`cell`, 1-based over all cells); markdown headings
//! give the `heading` of the cells under them.

use serde_json::Value;

use super::headings::Headings;
use super::{Location, TextBuilder};

/// Extracts a notebook into `b`.
///
/// Errors: not JSON (serde_json also refuses nesting deeper than 128), or no cells.
pub(super) fn extract(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a Jupyter notebook: {e}"))?;
    let cells = doc
        .get("cells")
        .or_else(|| doc.pointer("/worksheets/0/cells"))
        .and_then(Value::as_array)
        .ok_or("not a Jupyter notebook: no cells")?;
    let mut headings = Headings::default();
    for (i, cell) in cells.iter().enumerate() {
        if b.out_of_time() {
            break;
        }
        let kind = cell.get("cell_type").and_then(Value::as_str).unwrap_or("");
        let source = source(cell.get("source").or_else(|| cell.get("input")));
        if kind == "markdown" {
            for line in source.lines() {
                let hashes = line.chars().take_while(|c| *c == '#').count();
                let title = line[hashes..].trim();
                if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') && !title.is_empty()
                {
                    headings.enter(hashes, title);
                }
            }
        }
        let heading = headings.path();
        b.locate(Location {
            cell: u32::try_from(i + 1).ok(),
            heading,
            ..Location::default()
        });
        match kind {
            "markdown" => {
                for line in source.lines() {
                    b.text(line);
                    b.block();
                }
            }
            "code" => b.preformatted(&source),
            _ => {}
        }
    }
    Ok(())
}

/// A cell's source: a string or a list of lines.
fn source(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(lines)) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}
