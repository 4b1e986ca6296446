//! EPUB (2 and 3): the container names the package; the package's spine orders the
//! chapters (XHTML, read by [`super::html`]); the table of contents (EPUB 3 navigation
//! document or EPUB 2 NCX) names them. Each chapter's text carries its name as the
//! location's `chapter`, its headings as `heading`.

use std::collections::HashMap;

use super::archive::Archive;
use super::headings::collapse;
use super::html;
use super::xml::{self, Node, attribute, local};
use super::{Location, TextBuilder};

/// Extracts an EPUB file into `b`.
///
/// Errors: not a zip archive, or no readable package document.
pub(super) fn extract(bytes: &[u8], b: &mut TextBuilder) -> Result<(), String> {
    let mut archive = Archive::open(bytes, b).map_err(|e| format!("not an EPUB file: {e}"))?;
    let damage = archive.damage().map(str::to_owned);
    let container = read(&mut archive, "META-INF/container.xml", b)?
        .ok_or("not an EPUB file: no META-INF/container.xml")?;
    let mut package = None;
    let _ = xml::walk(container.as_slice(), b, |node, _| {
        if let Node::Open { tag, .. } = node
            && local(tag) == "rootfile"
            && package.is_none()
        {
            package = attribute(tag, "full-path");
        }
    });
    let package = package.ok_or("not an EPUB file: the container names no package")?;
    let opf = read(&mut archive, &package, b)?
        .ok_or_else(|| format!("not an EPUB file: no package document {package}"))?;
    let base = parent(&package);
    let mut manifest: HashMap<String, (String, String)> = HashMap::new(); // id → (path, properties)
    let mut spine: Vec<String> = Vec::new();
    let mut ncx: Option<String> = None;
    let _ = xml::walk(opf.as_slice(), b, |node, _| {
        let Node::Open { tag, .. } = node else { return };
        match local(tag) {
            "item" => {
                if let (Some(id), Some(href)) = (attribute(tag, "id"), attribute(tag, "href")) {
                    let props = attribute(tag, "properties").unwrap_or_default();
                    manifest.insert(id, (resolve(&base, &href), props));
                }
            }
            "itemref" => spine.extend(attribute(tag, "idref")),
            "spine" => ncx = attribute(tag, "toc"),
            _ => {}
        }
    });
    let titles = contents(&mut archive, &manifest, ncx.as_deref(), b);
    let mut read_chapters = 0;
    for id in &spine {
        if b.stopped() {
            break;
        }
        let Some((path, _)) = manifest.get(id) else {
            continue;
        };
        let Some(Ok(xhtml)) = archive.read(path, b) else {
            continue;
        };
        let title = titles.get(path).cloned().unwrap_or_default();
        b.locate(Location {
            chapter: (!title.is_empty()).then(|| title.clone()),
            ..Location::default()
        });
        html::walk(&String::from_utf8_lossy(&xhtml), b, Some(&title));
        read_chapters += 1;
    }
    if let Some(d) = damage {
        b.stop(format!(
            "{d}; {read_chapters} of {} chapters read",
            spine.len()
        ));
    }
    Ok(())
}

/// Chapter titles by archive path, from the EPUB 3 navigation document (manifest item
/// with `properties="nav"`) or else the EPUB 2 NCX (the spine's `toc`).
fn contents(
    archive: &mut Archive<'_>,
    manifest: &HashMap<String, (String, String)>,
    ncx: Option<&str>,
    b: &mut TextBuilder,
) -> HashMap<String, String> {
    let mut titles = HashMap::new();
    let nav = manifest
        .values()
        .find(|(_, props)| props.split_whitespace().any(|p| p == "nav"))
        .map(|(path, _)| path.clone());
    let source = nav
        .clone()
        .or_else(|| ncx.and_then(|id| manifest.get(id)).map(|(p, _)| p.clone()));
    let Some(path) = source else {
        return titles;
    };
    let Ok(Some(doc)) = read(archive, &path, b) else {
        return titles;
    };
    let base = parent(&path);
    // Navigation document: `<a href>` text. NCX: `<navLabel><text>` then `<content src>`.
    let mut label = String::new();
    let mut target: Option<String> = None;
    let mut in_label = false;
    let _ = xml::walk(doc.as_slice(), b, |node, _| match node {
        Node::Open { tag, empty } => match local(tag) {
            "a" if !empty => {
                target = attribute(tag, "href");
                label.clear();
                in_label = true;
            }
            "text" if !empty => {
                label.clear();
                in_label = true;
            }
            "content" => {
                if let Some(src) = attribute(tag, "src") {
                    add(&mut titles, &base, &src, &label);
                }
            }
            _ => {}
        },
        Node::Close(name) => {
            if name == "a"
                && let Some(href) = target.take()
            {
                add(&mut titles, &base, &href, &label);
            }
            if name == "a" || name == "text" {
                in_label = false;
            }
        }
        Node::Text(t) if in_label && label.len() < 1024 => label.push_str(t),
        Node::Text(_) => {}
    });
    titles
}

fn add(titles: &mut HashMap<String, String>, base: &str, href: &str, label: &str) {
    let file = href.split('#').next().unwrap_or(href);
    let label = collapse(label);
    if !file.is_empty() && !label.is_empty() {
        titles.entry(resolve(base, file)).or_insert(label);
    }
}

fn read(
    archive: &mut Archive<'_>,
    name: &str,
    b: &mut TextBuilder,
) -> Result<Option<Vec<u8>>, String> {
    archive.read(name, b).transpose()
}

/// The folder of an archive path (`OEBPS/content.opf` → `OEBPS`).
fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default()
}

/// `href` (relative, percent-encoded) against the folder `base`, `..` resolved.
fn resolve(base: &str, href: &str) -> String {
    let href = percent_decode(href.split('#').next().unwrap_or(href));
    let mut parts: Vec<&str> = if href.starts_with('/') {
        Vec::new()
    } else {
        base.split('/').filter(|p| !p.is_empty()).collect()
    };
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_resolve_against_the_package_folder() {
        assert_eq!(
            resolve("OEBPS", "text/ch%201.xhtml#p3"),
            "OEBPS/text/ch 1.xhtml"
        );
        assert_eq!(resolve("OEBPS/nav", "../ch2.xhtml"), "OEBPS/ch2.xhtml");
        assert_eq!(resolve("", "ch3.xhtml"), "ch3.xhtml");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
