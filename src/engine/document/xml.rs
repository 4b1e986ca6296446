//! XML as a stream of events (quick-xml, no tree: nesting depth costs nothing, and end
//! tags are not matched, so damaged XML reads as far as it goes).

use quick_xml::events::{BytesStart, Event};
use std::io::BufRead;

use quick_xml::{Reader, XmlVersion};

use super::TextBuilder;

/// One event handed to a format's walker.
pub(super) enum Node<'x> {
    /// A start tag (`empty`: `<x/>`, no end tag follows).
    Open {
        tag: &'x BytesStart<'x>,
        empty: bool,
    },
    /// An end tag, by local name.
    Close(&'x str),
    /// Text, entities resolved.
    Text(&'x str),
}

/// Local name of a tag (`w:p` → `p`).
pub(super) fn local<'t>(tag: &'t BytesStart<'_>) -> &'t str {
    strip_prefix(tag.name().into_inner())
}

fn strip_prefix(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// The value of the attribute whose local name is `name`, unescaped.
pub(super) fn attribute(tag: &BytesStart<'_>, name: &str) -> Option<String> {
    tag.attributes().flatten().find_map(|a| {
        (strip_prefix(a.key.into_inner()) == name).then(|| {
            a.normalized_value(XmlVersion::Implicit1_0)
                .map_or_else(|_| a.value.to_string(), |v| v.into_owned())
        })
    })
}

/// Calls `f` for each event of `xml` (a slice, or an archive member inflating as it is
/// read) until the end, an error or a stop of `b`.
///
/// Errors: malformed XML (or a failed read), with the byte offset (what came before is
/// kept).
pub(super) fn walk<R: BufRead>(
    xml: R,
    b: &mut TextBuilder,
    mut f: impl FnMut(Node<'_>, &mut TextBuilder),
) -> Result<(), String> {
    let mut reader = Reader::from_reader(xml);
    let config = reader.config_mut();
    config.check_end_names = false;
    config.trim_text(false);
    let mut buf = Vec::new();
    loop {
        if b.out_of_time() {
            return Ok(());
        }
        buf.clear();
        let event = match reader.read_event_into(&mut buf) {
            Ok(event) => event,
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.buffer_position()
                ));
            }
        };
        match event {
            Event::Start(tag) => f(
                Node::Open {
                    tag: &tag,
                    empty: false,
                },
                b,
            ),
            Event::Empty(tag) => f(
                Node::Open {
                    tag: &tag,
                    empty: true,
                },
                b,
            ),
            Event::End(tag) => f(Node::Close(strip_prefix(tag.name().into_inner())), b),
            Event::Text(t) => f(Node::Text(&t.xml10_content()), b),
            Event::CData(t) => f(Node::Text(&t.xml10_content()), b),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match &*r.into_inner() {
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "amp" => Some('&'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        "nbsp" => Some(' '),
                        _ => None,
                    },
                };
                if let Some(c) = c {
                    f(Node::Text(c.encode_utf8(&mut [0; 4])), b);
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}
