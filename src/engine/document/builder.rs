//! The text under construction: words joined into lines wrapped near [`WRAP`]
//! characters, blocks ended by line breaks, runs of lines tagged with their
//! [`Location`], and the limits (text size, time) checked as text arrives.

use std::time::Instant;

use super::{Extracted, Limits, Location, Section};

/// Characters after which a paragraph's line is wrapped at the next space.
pub(crate) const WRAP: usize = 100;

/// A run of text without spaces longer than this is cut (minified files).
const LONGEST_WORD: usize = 4 * WRAP;

/// Text pushes between two looks at the clock.
const CLOCK_EVERY: u32 = 256;

/// Accumulates a document's text; see the module documentation.
pub(crate) struct TextBuilder {
    text: String,
    /// Lines completed (the current line is `lines`, 0-based).
    lines: usize,
    /// Characters on the current line.
    column: usize,
    /// A space is due before the next word (whitespace was seen).
    space: bool,
    sections: Vec<Section>,
    location: Location,
    limits: Limits,
    deadline: Instant,
    pushes: u32,
    /// Why extraction must stop (a limit reached); set once.
    stop: Option<String>,
}

impl TextBuilder {
    /// An empty builder whose time runs out at `deadline`.
    pub(crate) fn new(limits: Limits, deadline: Instant) -> Self {
        TextBuilder {
            text: String::new(),
            lines: 0,
            column: 0,
            space: false,
            sections: Vec::new(),
            location: Location::default(),
            limits,
            deadline,
            pushes: 0,
            stop: None,
        }
    }

    /// The limits this builder enforces.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a limit was reached: extractors stop reading when it is.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Records that a limit was reached (the first reason wins).
    pub(crate) fn stop(&mut self, reason: String) {
        self.stop.get_or_insert(reason);
    }

    /// Looks at the clock every few calls; `true` once the time budget is spent.
    pub(crate) fn out_of_time(&mut self) -> bool {
        self.pushes += 1;
        if self.pushes.is_multiple_of(CLOCK_EVERY) && Instant::now() > self.deadline {
            let secs = self.limits.time_budget.as_secs();
            self.stop(format!("time budget of {secs} s spent"));
        }
        self.stopped()
    }

    /// The location of the text that follows (a page, heading, chapter or cell); ends
    /// the current block.
    pub(crate) fn locate(&mut self, location: Location) {
        self.block();
        self.location = location;
    }

    /// Inline text: whitespace runs become one space, lines wrap near [`WRAP`].
    pub(crate) fn text(&mut self, s: &str) {
        if self.out_of_time() {
            return;
        }
        if s.starts_with(char::is_whitespace) {
            self.space = true;
        }
        for word in s.split_whitespace() {
            self.word(word);
            self.space = true;
        }
        if !s.ends_with(char::is_whitespace) && !s.trim().is_empty() {
            self.space = false;
        }
    }

    fn word(&mut self, word: &str) {
        let mut word = word;
        while !word.is_empty() {
            let mut take = word.len().min(LONGEST_WORD);
            while !word.is_char_boundary(take) {
                take -= 1;
            }
            let (head, rest) = word.split_at(take);
            let width = head.chars().count();
            if self.column > 0 && self.space {
                if self.column + 1 + width > WRAP {
                    self.newline();
                } else {
                    self.push(" ");
                    self.column += 1;
                }
            }
            self.push(head);
            self.column += width;
            self.space = !rest.is_empty();
            if !rest.is_empty() {
                self.newline();
            }
            word = rest;
        }
    }

    /// Text whose line breaks matter (code, preformatted blocks): kept line by line,
    /// each line cut at [`LONGEST_WORD`] characters.
    pub(crate) fn preformatted(&mut self, s: &str) {
        self.block();
        for line in s.lines() {
            if self.out_of_time() {
                return;
            }
            let line = line.trim_end();
            let mut cut = line.len().min(LONGEST_WORD);
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            self.push(&line[..cut]);
            self.column += 1;
            self.newline();
        }
    }

    /// Ends a block (a paragraph, list item, table cell row): the next text starts a
    /// new line.
    pub(crate) fn block(&mut self) {
        if self.column > 0 {
            self.newline();
        }
        self.space = false;
    }

    fn newline(&mut self) {
        self.push("\n");
        self.lines += 1;
        self.column = 0;
        self.space = false;
    }

    fn push(&mut self, s: &str) {
        if self.stop.is_some() {
            return;
        }
        if self.text.len() + s.len() > self.limits.max_text_bytes {
            let mib = self.limits.max_text_bytes / (1024 * 1024);
            self.stop(format!("text beyond {mib} MiB left out"));
            return;
        }
        if self.column == 0 && s != "\n" {
            self.mark_line();
        }
        self.text.push_str(s);
    }

    /// Records the current location for the line about to start.
    fn mark_line(&mut self) {
        match self.sections.last_mut() {
            Some(last) if last.location == self.location => last.end = self.lines + 1,
            _ => self.sections.push(Section {
                start: self.lines,
                end: self.lines + 1,
                location: self.location.clone(),
            }),
        }
    }

    /// The text and its sections; `partial` holds the reason a limit stopped it.
    pub(crate) fn finish(mut self) -> Extracted {
        self.block();
        if self.text.ends_with('\n') {
            self.text.pop();
        }
        Extracted {
            text: self.text,
            sections: self.sections,
            partial: self.stop,
        }
    }
}
