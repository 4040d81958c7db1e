//! Path rules: canonical relative paths only, and symlinks that stay inside the package and
//! are never passed through.

use crate::finding::{Code, Finding};
use crate::manifest::META_DIR;
use std::collections::BTreeMap;

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest path component accepted, in bytes.
pub const MAX_COMPONENT: usize = 255;
/// Most symlinks followed while resolving one target.
const MAX_LINKS: usize = 40;

/// Whether `c` is a character that changes how text around it shows rather than showing itself:
/// a control character (Unicode Cc), a format character (Cf: bidirectional overrides and
/// isolates such as U+202E, zero-width characters, the byte order mark...), or a line or
/// paragraph separator (U+2028, U+2029). Names shown to people may not hold them: `X\u{202e}Y`
/// would display as another vendor.
pub fn is_control_or_format(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// Check a raw path as stored in an archive or manifest and return its canonical form (a
/// directory's single trailing `/` removed). The error is the finding code and why.
pub fn check(raw: &[u8], is_dir: bool) -> Result<String, (Code, String)> {
    let invalid = |why: &str| Err((Code::PATH_INVALID, why.to_string()));
    let Ok(s) = std::str::from_utf8(raw) else {
        return invalid("path is not UTF-8");
    };
    if s.is_empty() {
        return invalid("empty path");
    }
    if s.starts_with('/') {
        return Err((Code::PATH_ABSOLUTE, "absolute path".into()));
    }
    let s = match s.strip_suffix('/') {
        Some(d) if is_dir => d,
        Some(_) => return invalid("only directories may end in /"),
        None => s,
    };
    if s.split('/').any(|c| c == "..") {
        return Err((Code::PATH_TRAVERSAL, "path has a .. component".into()));
    }
    if s.chars().any(is_control_or_format) {
        return invalid("path has a control or format character (such as a bidi override)");
    }
    if s.len() > MAX_PATH {
        return invalid("path is longer than 4096 bytes");
    }
    for c in s.split('/') {
        if c.is_empty() {
            return invalid("path has an empty component (//) or is only /");
        }
        if c == "." {
            return invalid("path has a . component");
        }
        if c.len() > MAX_COMPONENT {
            return invalid("a path component is longer than 255 bytes");
        }
    }
    Ok(s.to_string())
}

/// The shape of one entry, as far as path resolution cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node<'a> {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink with this target.
    Symlink(&'a str),
}

/// Findings about symlinks among `nodes` (canonical paths, the `.aapi` directory excluded):
/// paths that pass through a symlink, and symlinks that escape the package or dangle.
pub fn link_findings(nodes: &BTreeMap<&str, Node<'_>>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (&path, node) in nodes {
        let mut prefix = path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(Node::Symlink(t)) = nodes.get(parent) {
                out.push(Finding::at(
                    Code::SYMLINK_THROUGH,
                    path,
                    format!("lies under {parent}, a symlink to {t}"),
                ));
                break;
            }
            prefix = parent;
        }
        if let Node::Symlink(target) = node
            && let Err((code, why)) = resolve(nodes, path, target)
        {
            out.push(Finding::at(
                code,
                path,
                format!("symlink to {target}: {why}"),
            ));
        }
    }
    out
}

/// Resolve the symlink at `link` with `target` among `nodes` the way the kernel would, without
/// leaving the package root. Returns the path it ends at ("" for the root).
pub fn resolve(
    nodes: &BTreeMap<&str, Node<'_>>,
    link: &str,
    target: &str,
) -> Result<String, (Code, String)> {
    let escape = |why: &str| Err((Code::SYMLINK_ESCAPE, why.to_string()));
    if target.starts_with('/') {
        return escape("absolute target");
    }
    let mut at: Vec<String> = match link.rsplit_once('/') {
        Some((parent, _)) => parent.split('/').map(String::from).collect(),
        None => Vec::new(),
    };
    let mut pending: Vec<String> = target.split('/').rev().map(String::from).collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                if at.pop().is_none() {
                    return escape("resolves outside the package");
                }
                continue;
            }
            _ => {}
        }
        at.push(c);
        let here = at.join("/");
        if here == META_DIR {
            return escape("points into the reserved .aapi directory");
        }
        match nodes.get(here.as_str()) {
            None => {
                return Err((
                    Code::SYMLINK_DANGLING,
                    format!("{here} is not in the package"),
                ));
            }
            Some(Node::Dir) => {}
            Some(Node::File) => {
                // Anything after a file, even a trailing `/` or `/.`, makes the kernel fail
                // with ENOTDIR.
                if !pending.is_empty() {
                    return Err((
                        Code::SYMLINK_DANGLING,
                        format!("{here} is a file, and the target goes on after it with /"),
                    ));
                }
            }
            Some(Node::Symlink(t)) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err((
                        Code::SYMLINK_DANGLING,
                        "too many levels of symlinks (a loop)".into(),
                    ));
                }
                if t.starts_with('/') {
                    return escape(&format!("goes through {here}, an absolute symlink"));
                }
                at.pop();
                pending.extend(t.split('/').rev().map(String::from));
            }
        }
    }
    Ok(at.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_only() {
        assert_eq!(check(b"lib/x.so", false), Ok("lib/x.so".into()));
        assert_eq!(check(b"lib/", true), Ok("lib".into()));
        let code = |p: &[u8], d| check(p, d).unwrap_err().0;
        assert_eq!(code(b"/etc/passwd", false), Code::PATH_ABSOLUTE);
        assert_eq!(code(b"../x", false), Code::PATH_TRAVERSAL);
        assert_eq!(code(b"a/../../x", false), Code::PATH_TRAVERSAL);
        assert_eq!(code(b"./x", false), Code::PATH_INVALID);
        assert_eq!(code(b"a//x", false), Code::PATH_INVALID);
        assert_eq!(code(b"a/x/", false), Code::PATH_INVALID);
        assert_eq!(code(b"a\nb", false), Code::PATH_INVALID);
        assert_eq!(code(b"\xff", false), Code::PATH_INVALID);
        assert_eq!(code(b"", false), Code::PATH_INVALID);
        assert_eq!(code(&[b'a'; 256], false), Code::PATH_INVALID);
        // Characters that change how a name displays.
        for c in [
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{feff}',
            '\u{2028}',
            '\u{e0041}',
        ] {
            assert_eq!(
                code(format!("lib/a{c}b").as_bytes(), false),
                Code::PATH_INVALID
            );
        }
        assert_eq!(
            check("lib/café/中文/😀.so".as_bytes(), false),
            Ok("lib/café/中文/😀.so".into())
        );
    }

    fn codes(nodes: &[(&'static str, Node<'static>)]) -> Vec<(String, Code)> {
        let map: BTreeMap<_, _> = nodes.iter().copied().collect();
        link_findings(&map)
            .into_iter()
            .map(|f| (f.path.unwrap(), f.code))
            .collect()
    }

    #[test]
    fn symlinks_inside_the_package_are_fine() {
        let nodes = [
            ("lib", Node::Dir),
            ("lib/libx.so.1", Node::File),
            ("lib/libx.so", Node::Symlink("libx.so.1")),
            ("libx", Node::Symlink("lib/./libx.so")),
            ("up", Node::Symlink("lib/..")),
        ];
        assert_eq!(codes(&nodes), vec![]);
        let map: BTreeMap<_, _> = nodes.iter().copied().collect();
        assert_eq!(
            resolve(&map, "libx", "lib/./libx.so"),
            Ok("lib/libx.so.1".into())
        );
    }

    #[test]
    fn escapes_dangling_loops_and_pass_through() {
        let found = codes(&[
            ("lib", Node::Dir),
            ("abs", Node::Symlink("/etc/passwd")),
            ("up", Node::Symlink("../outside")),
            ("deep", Node::Symlink("lib/../../x")),
            ("gone", Node::Symlink("nothere")),
            ("loop1", Node::Symlink("loop2")),
            ("loop2", Node::Symlink("loop1")),
            ("meta", Node::Symlink(".aapi/manifest.json")),
            ("via", Node::Symlink("abs")),
            ("dirlink", Node::Symlink("lib")),
            ("dirlink/x", Node::File),
        ]);
        let expect = [
            ("abs", Code::SYMLINK_ESCAPE),
            ("deep", Code::SYMLINK_ESCAPE),
            ("dirlink/x", Code::SYMLINK_THROUGH),
            ("gone", Code::SYMLINK_DANGLING),
            ("loop1", Code::SYMLINK_DANGLING),
            ("loop2", Code::SYMLINK_DANGLING),
            ("meta", Code::SYMLINK_ESCAPE),
            ("up", Code::SYMLINK_ESCAPE),
            ("via", Code::SYMLINK_ESCAPE),
        ];
        let expect: Vec<_> = expect.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        assert_eq!(found, expect);
    }

    #[test]
    fn nothing_may_follow_a_file_not_even_a_slash() {
        let found = codes(&[
            ("lib", Node::Dir),
            ("lib/libx.so", Node::File),
            ("lib/slash", Node::Symlink("libx.so/")),
            ("lib/dot", Node::Symlink("libx.so/.")),
            ("lib/up", Node::Symlink("libx.so/..")),
            ("lib/alias", Node::Symlink("libx.so")),
            ("lib/via", Node::Symlink("alias/")),
            ("lib/dir", Node::Symlink("../lib/")),
            ("lib/dirdot", Node::Symlink("../lib/.")),
        ]);
        let expect = ["lib/dot", "lib/slash", "lib/up", "lib/via"];
        let expect: Vec<_> = expect
            .iter()
            .map(|p| (p.to_string(), Code::SYMLINK_DANGLING))
            .collect();
        assert_eq!(found, expect);
    }
}
