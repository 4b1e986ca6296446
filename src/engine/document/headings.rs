//! The heading path of a document read front to back (HTML `<hN>`, DOCX/ODT outline
//! levels, notebook `#` headings, PDF bookmarks): a heading closes those at its level or
//! deeper; the path is the open headings, outermost first, joined by ` > `.

/// Open headings, outermost first: (level, title with whitespace collapsed).
#[derive(Debug, Default)]
pub(super) struct Headings(Vec<(usize, String)>);

impl Headings {
    /// A heading of `level` titled `title` (whitespace runs become one space). Returns
    /// the collapsed title, `None` (and nothing changes) when it is blank.
    pub(super) fn enter(&mut self, level: usize, title: &str) -> Option<String> {
        let title = collapse(title);
        if title.is_empty() {
            return None;
        }
        while self.0.last().is_some_and(|(l, _)| *l >= level) {
            self.0.pop();
        }
        self.0.push((level, title.clone()));
        Some(title)
    }

    /// The path, `Guide > Install > Linux`; `None` before the first heading.
    pub(super) fn path(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" > ")
        })
    }
}

/// `s` with its whitespace runs made one space and its ends trimmed.
pub(super) fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
