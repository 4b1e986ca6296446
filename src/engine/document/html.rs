//! HTML and XHTML: html5ever's tokenizer (a stream of tags and text, no tree, so
//! neither size nor nesting depth costs memory) → text without markup, scripts or
//! styles; headings `<h1>`–`<h6>` start sections, block elements end lines, `<pre>`
//! keeps its lines.

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use super::headings::{Headings, collapse};
use super::{Location, TextBuilder};

/// Bytes fed to the tokenizer between two looks at the limits.
const FEED: usize = 64 * 1024;

/// Extracts an HTML file into `b`.
pub(super) fn extract(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    walk(&text, b, None);
    Ok(())
}

/// Walks `html` into `b`. With `chapter` (EPUB), every location carries it; when it is
/// `Some("")` the document's first heading names the chapter from there on. Returns the
/// chapter's name: the one given, else the first heading, else the `<title>`.
pub(super) fn walk(html: &str, b: &mut TextBuilder, chapter: Option<&str>) -> Option<String> {
    let sink = Sink {
        state: RefCell::new(State {
            b,
            chapter: chapter.map(str::to_owned),
            headings: Headings::default(),
            raw: None,
            heading: None,
            pre: None,
            title: None,
            titled: false,
            page_title: None,
        }),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let queue = BufferQueue::default();
    let mut rest = html;
    while !rest.is_empty() {
        let mut cut = rest.len().min(FEED);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        queue.push_back(StrTendril::from_slice(piece));
        let _ = tokenizer.feed(&queue);
        if tokenizer.sink.state.borrow_mut().b.out_of_time() {
            break;
        }
    }
    tokenizer.end();
    let state = tokenizer.sink.state.into_inner();
    state.b.block();
    state.chapter.filter(|c| !c.is_empty()).or(state.page_title)
}

struct Sink<'a> {
    state: RefCell<State<'a>>,
}

struct State<'a> {
    b: &'a mut TextBuilder,
    /// EPUB chapter name (`Some("")`: still to be named).
    chapter: Option<String>,
    /// The heading path.
    headings: Headings,
    /// Inside an element whose text is not shown (`script`, `style`, …): its name.
    raw: Option<String>,
    /// Inside a heading: (level, text so far).
    heading: Option<(u8, String)>,
    /// Inside `<pre>`: (depth of nested `<pre>`, text so far).
    pre: Option<(u32, String)>,
    /// Inside `<title>`: its text so far.
    title: Option<String>,
    /// The first `<title>` was seen (later ones are text).
    titled: bool,
    /// The document's `<title>`, whitespace collapsed.
    page_title: Option<String>,
}

/// Elements whose content is never text for people.
const HIDDEN: [&str; 7] = [
    "script", "style", "noscript", "template", "svg", "math", "iframe",
];

/// Elements that end a line.
const BLOCKS: [&str; 36] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "td",
    "th",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "caption",
    "blockquote",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "main",
    "figure",
    "figcaption",
    "hr",
    "address",
    "details",
    "summary",
    "form",
    "fieldset",
    "legend",
    "center",
    "body",
];

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

impl State<'_> {
    fn location(&self) -> Location {
        let heading = self.headings.path();
        Location {
            heading,
            chapter: self.chapter.clone().filter(|c| !c.is_empty()),
            ..Location::default()
        }
    }

    fn start(&mut self, name: &str) -> TokenSinkResult<()> {
        if self.raw.is_some() {
            return TokenSinkResult::Continue;
        }
        if name == "title" && !self.titled {
            self.titled = true;
            self.title = Some(String::new());
            return TokenSinkResult::RawData(RawKind::Rcdata);
        }
        if HIDDEN.contains(&name) {
            self.raw = Some(name.to_owned());
            return match name {
                "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                "style" | "noscript" | "iframe" => TokenSinkResult::RawData(RawKind::Rawtext),
                _ => TokenSinkResult::Continue,
            };
        }
        if let Some((depth, _)) = &mut self.pre {
            if name == "pre" {
                *depth += 1;
            }
            return TokenSinkResult::Continue;
        }
        if name == "pre" {
            self.b.block();
            self.pre = Some((1, String::new()));
        } else if let Some(level) = heading_level(name) {
            self.heading = Some((level, String::new()));
        } else if BLOCKS.contains(&name) {
            self.b.block();
        }
        TokenSinkResult::Continue
    }

    fn end(&mut self, name: &str) {
        if let Some(raw) = &self.raw {
            if raw == name {
                self.raw = None;
            }
            return;
        }
        if name == "title" {
            if let Some(title) = self.title.take() {
                let title = collapse(&title);
                if !title.is_empty() {
                    self.page_title = Some(title);
                }
            }
            return;
        }
        if let Some((depth, text)) = &mut self.pre {
            if name == "pre" {
                *depth -= 1;
                if *depth == 0 {
                    let text = std::mem::take(text);
                    self.pre = None;
                    self.b.preformatted(&text);
                }
            }
            return;
        }
        if let Some(level) = heading_level(name) {
            if let Some((open, text)) = self.heading.take()
                && let Some(title) = self.headings.enter(usize::from(open.min(level)), &text)
            {
                if self.chapter.as_deref() == Some("") {
                    self.chapter = Some(title.clone());
                }
                let location = self.location();
                self.b.locate(location);
                self.b.text(&title);
                self.b.block();
            }
        } else if BLOCKS.contains(&name) || name == "html" {
            self.b.block();
        }
    }

    fn characters(&mut self, s: &str) {
        if let Some(title) = &mut self.title {
            if title.len() < 1024 {
                title.push_str(s);
            }
            return;
        }
        if self.raw.is_some() {
            return;
        }
        if let Some((_, text)) = &mut self.pre {
            text.push_str(s);
        } else if let Some((_, text)) = &mut self.heading {
            if text.len() < 4096 {
                text.push_str(s);
            }
        } else {
            self.b.text(s);
        }
    }
}

impl TokenSink for Sink<'_> {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.state.borrow_mut();
        if state.b.stopped() {
            return TokenSinkResult::Continue;
        }
        match token {
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => {
                    let result = state.start(&tag.name);
                    if tag.self_closing {
                        state.end(&tag.name);
                    }
                    result
                }
                TagKind::EndTag => {
                    state.end(&tag.name);
                    TokenSinkResult::Continue
                }
            },
            Token::CharacterTokens(s) => {
                state.characters(&s);
                TokenSinkResult::Continue
            }
            _ => TokenSinkResult::Continue,
        }
    }
}
