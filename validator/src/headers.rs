//! The raw bytes of an entry's headers: the padding after the previous entry's data, the
//! extension headers (GNU long names, pax records) that the `tar` crate folds into the entry,
//! and the entry's own header block. They are judged here from their bytes, so that no record
//! or field the validator does not understand can make another extractor (GNU tar, libarchive)
//! write something else than what was verified, and no byte of a verified package goes
//! unchecked.

use crate::finding::{Code, Finding};
use std::collections::HashSet;

/// The pax records a package may carry, each at most once: the ones that name the entry, its
/// size, times and owner. Extractors act on others (sparse maps, extended attributes, ACLs,
/// file flags, charsets) in ways a manifest does not describe.
pub const PAX_ALLOWED: &[&str] = &[
    "path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname",
];

/// A tar block.
const BLOCK: u64 = 512;

/// `n` rounded up to whole blocks.
pub(crate) fn round_up(n: u64) -> u64 {
    n.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// Judge the headers of one entry: `area` holds the archive's bytes from `start` (where the
/// previous entry's data ended; 0 for the first entry) to the end of the entry's own header at
/// `header_pos`. `path` names the entry in findings, `prev` the previous one.
pub(crate) fn check(
    area: &[u8],
    start: u64,
    header_pos: u64,
    path: &str,
    prev: &str,
) -> Vec<Finding> {
    let mut out = padding(area, start, prev).into_iter().collect::<Vec<_>>();
    let first = round_up(start) - start;
    let Some(ext) = usize::try_from(first)
        .ok()
        .zip(usize::try_from(header_pos.saturating_sub(start)).ok())
        .and_then(|(from, to)| area.get(from..to))
    else {
        // The reader kept less than it read: nothing to judge.
        return out;
    };
    let (mut long_name, mut long_link, mut pax) = (false, false, None);
    let mut at = 0usize;
    while let Some(h) = ext.get(at..at + BLOCK as usize) {
        let header = tar::Header::from_byte_slice(h);
        let size = header.entry_size().unwrap_or(0);
        let data_at = at + BLOCK as usize;
        let data = usize::try_from(size)
            .ok()
            .and_then(|n| ext.get(data_at..data_at.checked_add(n)?))
            .unwrap_or_default();
        let pad_at = data_at + data.len();
        let pad_end = data_at.saturating_add(usize::try_from(round_up(size)).unwrap_or(usize::MAX));
        if ext
            .get(pad_at..pad_end.min(ext.len()))
            .is_some_and(|p| p.iter().any(|&b| b != 0))
        {
            out.push(Finding::at(
                Code::ARCHIVE_PADDING,
                path,
                "non-zero bytes in the padding of one of its extension headers",
            ));
        }
        let problems = block(h, None);
        if !problems.is_empty() {
            out.push(Finding::at(
                Code::ARCHIVE_HEADER,
                path,
                format!(
                    "one of its extension headers ({}): {}",
                    kind_name(h[156]),
                    problems.join("; ")
                ),
            ));
        }
        match h[156] {
            b'L' => long_name = true,
            b'K' => long_link = true,
            b'x' => pax = Some(data),
            _ => {}
        }
        at = data_at.saturating_add(usize::try_from(round_up(size)).unwrap_or(usize::MAX));
    }
    if let Some(data) = pax {
        pax_findings(data, path, long_name, long_link, &mut out);
    }
    out
}

/// The finding about the entry's own header block `h`, read by the `tar` crate as the entry
/// `path` (after its long name, pax `path` record or ustar prefix) with the symlink target
/// `link`.
pub(crate) fn entry(h: &[u8], path: &[u8], link: Option<&[u8]>, show: &str) -> Option<Finding> {
    let problems = block(h, Some((path, link)));
    (!problems.is_empty()).then(|| {
        Finding::at(
            Code::ARCHIVE_HEADER,
            show,
            format!("its header {}", problems.join("; ")),
        )
    })
}

/// What an extension header of type `t` is, for messages.
fn kind_name(t: u8) -> &'static str {
    match t {
        b'L' => "a GNU long name",
        b'K' => "a GNU long link name",
        b'x' => "pax records",
        _ => "an extension",
    }
}

/// The 512-byte header fields: name and byte range.
const NAME: (&str, std::ops::Range<usize>) = ("name", 0..100);
const LINKNAME: (&str, std::ops::Range<usize>) = ("link name", 157..257);
const PREFIX: (&str, std::ops::Range<usize>) = ("prefix", 345..500);
const TEXT: [(&str, std::ops::Range<usize>); 4] =
    [NAME, LINKNAME, ("uname", 265..297), ("gname", 297..329)];
/// Numeric fields, and whether the base-256 form is allowed in them (the `tar` crate writes it
/// for large sizes, owners and times).
const NUMBERS: [(&str, std::ops::Range<usize>, bool); 8] = [
    ("mode", 100..108, false),
    ("uid", 108..116, true),
    ("gid", 116..124, true),
    ("size", 124..136, true),
    ("mtime", 136..148, true),
    ("checksum", 148..156, false),
    ("devmajor", 329..337, false),
    ("devminor", 337..345, false),
];
/// The times a GNU header may carry where a ustar header has its prefix.
const GNU_TIMES: [(&str, std::ops::Range<usize>, bool); 2] =
    [("atime", 345..357, false), ("ctime", 357..369, false)];
/// The rest of a GNU header's prefix area: multi-volume offset, long-name count, sparse map,
/// its continuation flag and the real size, which describe only multi-volume and sparse
/// entries.
const GNU_ONLY: std::ops::Range<usize> = 369..500;
/// The bytes after the ustar prefix (GNU: after the real size), which no format uses.
const UNUSED: std::ops::Range<usize> = 500..512;

/// Why the header block `h` is not read the same way by every tar, or carries bytes nothing
/// reads. For an entry's own header, `own` holds the entry's path and symlink target as the
/// `tar` crate read them; extension headers (`None`) are judged by their fields alone (their
/// name, which extractors ignore, may be anything).
fn block(h: &[u8], own: Option<(&[u8], Option<&[u8]>)>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(h) = h.get(..BLOCK as usize) else {
        return out;
    };
    let (magic, version) = (&h[257..263], &h[263..265]);
    let gnu = magic == b"ustar " && version == b" \0";
    let ustar = magic == b"ustar\0" && version == b"00";
    if !gnu && !ustar {
        // The tar crate reads a ustar prefix only with version 00; GNU tar whenever the magic
        // is ustar\0, libarchive whenever it starts with ustar: the name differs.
        out.push(format!(
            "has magic {} and version {}: only ustar (\"ustar\\0\" \"00\") and GNU (\"ustar \" \" \\0\") headers are read alike by every tar",
            quoted(magic),
            quoted(version)
        ));
        return out;
    }
    let fields = TEXT.iter().chain((!gnu).then_some(&PREFIX));
    for (name, range) in fields {
        let f = &h[range.clone()];
        if let Some(nul) = f.iter().position(|&b| b == 0)
            && f[nul..].iter().any(|&b| b != 0)
        {
            out.push(format!(
                "has bytes after the NUL that ends its {name} field"
            ));
        }
    }
    let numbers = NUMBERS.iter().chain(if gnu { &GNU_TIMES[..] } else { &[] });
    let mut values = std::collections::HashMap::new();
    for (name, range, base256) in numbers {
        match number(&h[range.clone()], *base256) {
            Some(v) => {
                values.insert(*name, v);
            }
            None => out.push(format!(
                "has a {name} field {} that is not a number every tar reads alike",
                quoted(&h[range.clone()])
            )),
        }
    }
    if values.get("devmajor").is_some_and(|&v| v != 0)
        || values.get("devminor").is_some_and(|&v| v != 0)
    {
        out.push("has device numbers, and packages hold no devices".to_string());
    }
    if gnu && h[GNU_ONLY].iter().any(|&b| b != 0) {
        out.push(
            "has non-zero bytes in the GNU fields for multi-volume and sparse files (offset, sparse map, real size)"
                .to_string(),
        );
    }
    if h[UNUSED].iter().any(|&b| b != 0) {
        out.push("has non-zero bytes in its last 12 bytes, which no format uses".to_string());
    }
    let kind = h[156];
    let link_field = cut(&h[LINKNAME.1]);
    if !matches!(kind, b'1' | b'2') && !link_field.is_empty() {
        out.push("has a link name, on an entry that is not a link".to_string());
    }
    let Some((path, link)) = own else {
        return out;
    };
    if values.get("mode").is_some_and(|&m| m > 0o7777) {
        out.push(format!(
            "has mode {:o}, with bits besides the permission bits (07777)",
            values["mode"]
        ));
    }
    // The name the header itself holds: all of the entry's path, or (when a long name or pax
    // record gives the path) a part of its start.
    let mut name = Vec::new();
    if !gnu && !cut(&h[PREFIX.1]).is_empty() {
        name.extend_from_slice(cut(&h[PREFIX.1]));
        name.push(b'/');
    }
    name.extend_from_slice(cut(&h[NAME.1]));
    if !path.starts_with(&name) {
        out.push(format!(
            "holds the name {}, which is not the entry's path (or the start of it)",
            quoted(&name)
        ));
    }
    if kind == b'2' && !link.unwrap_or_default().starts_with(link_field) {
        out.push(format!(
            "holds the link name {}, which is not the symlink's target (or the start of it)",
            quoted(link_field)
        ));
    }
    out
}

/// A header field up to its first NUL.
fn cut(f: &[u8]) -> &[u8] {
    f.iter().position(|&b| b == 0).map_or(f, |n| &f[..n])
}

/// Bytes for a message: printable ASCII as is, anything else escaped, in quotes.
fn quoted(b: &[u8]) -> String {
    let text: String = b
        .iter()
        .map(|&c| match c {
            0 => "\\0".to_string(),
            c => c.escape_ascii().to_string(),
        })
        .collect();
    format!("\"{text}\"")
}

/// The value of a numeric header field, when every tar reads the same one from it: all NULs
/// (0); octal digits, after spaces and before NULs or spaces only (no sign, no other
/// whitespace: GNU tar reads `+` as base 64, the `tar` crate trims any whitespace); or, where
/// `base256` allows it, the base-256 form whose first byte is exactly 0x80 and whose bytes the
/// `tar` crate reads too (its last 8).
fn number(f: &[u8], base256: bool) -> Option<u64> {
    if f.iter().all(|&b| b == 0) {
        return Some(0);
    }
    if f[0] == 0x80 {
        let low = f.len().saturating_sub(8).max(1);
        if !base256 || f[1..low].iter().any(|&b| b != 0) {
            return None;
        }
        return Some(f[low..].iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)));
    }
    let start = f.iter().position(|&b| b != b' ')?;
    let digits = f[start..]
        .iter()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .count();
    let rest = &f[start + digits..];
    if digits == 0 || rest.iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    let text = std::str::from_utf8(&f[start..start + digits]).ok()?;
    u64::from_str_radix(text, 8).ok()
}

/// The finding when the padding from `start` (where the data of the entry `prev` ended) to the
/// next block, at the start of `area`, is not all zeros.
pub(crate) fn padding(area: &[u8], start: u64, prev: &str) -> Option<Finding> {
    let len = usize::try_from(round_up(start) - start).ok()?;
    let pad = &area[..len.min(area.len())];
    pad.iter().any(|&b| b != 0).then(|| {
        Finding::at(
            Code::ARCHIVE_PADDING,
            prev,
            "non-zero bytes in the padding after its data; packages carry nothing that is not checked",
        )
    })
}

/// Findings about the pax records `data` of the entry `path`, which also has a GNU long name
/// (`long_name`) or long link name (`long_link`).
fn pax_findings(data: &[u8], path: &str, long_name: bool, long_link: bool, out: &mut Vec<Finding>) {
    let recs = match records(data) {
        Ok(r) => r,
        Err(why) => {
            out.push(Finding::at(
                Code::ARCHIVE_MALFORMED,
                path,
                format!("its pax header is malformed: {why}"),
            ));
            return;
        }
    };
    let (mut seen, mut sparse, mut other) = (HashSet::new(), false, Vec::new());
    for (key, value) in recs {
        if key.starts_with("GNU.sparse.") {
            sparse = true;
            continue;
        }
        if !PAX_ALLOWED.contains(&key) {
            if !other.contains(&key) {
                other.push(key);
            }
            continue;
        }
        let why = if !seen.insert(key) {
            "appears twice (extractors disagree on which one counts)"
        } else if !well_formed(key, value) {
            "has a malformed value"
        } else if (key == "path" && long_name) || (key == "linkpath" && long_link) {
            "names the entry as a GNU long name does too (extractors disagree on which one counts)"
        } else {
            continue;
        };
        out.push(Finding::at(
            Code::PAX_RECORD,
            path,
            format!("the pax record {key} {why}"),
        ));
    }
    if sparse {
        out.push(Finding::at(
            Code::ENTRY_TYPE,
            path,
            "a sparse file (pax GNU.sparse records)",
        ));
    }
    if !other.is_empty() {
        out.push(Finding::at(
            Code::PAX_RECORD,
            path,
            format!(
                "pax records {}: extractors act on them (extended attributes, ACLs, file capabilities, charsets...), a manifest does not describe them; packages carry only {}",
                other.join(", "),
                PAX_ALLOWED.join(", ")
            ),
        ));
    }
}

/// Whether `value` is a well-formed value of the allowed pax record `key`.
fn well_formed(key: &str, value: &[u8]) -> bool {
    let digits = |v: &[u8]| !v.is_empty() && v.len() <= 20 && v.iter().all(u8::is_ascii_digit);
    match key {
        "size" | "uid" | "gid" => {
            digits(value) && std::str::from_utf8(value).is_ok_and(|s| s.parse::<u64>().is_ok())
        }
        "mtime" | "atime" | "ctime" => {
            let v = value.strip_prefix(b"-").unwrap_or(value);
            match v.iter().position(|&b| b == b'.') {
                Some(dot) => digits(&v[..dot]) && digits(&v[dot + 1..]),
                None => digits(v),
            }
        }
        "uname" | "gname" => std::str::from_utf8(value)
            .is_ok_and(|s| !s.is_empty() && !s.chars().any(crate::paths::is_control_or_format)),
        // path and linkpath are judged as the entry's path and symlink target.
        _ => true,
    }
}

/// The records (`LENGTH KEY=VALUE\n`, LENGTH counting the whole record) of a pax extended
/// header, which must fill it exactly; or why it is malformed. A value may not hold a newline:
/// the `tar` crate splits records at newlines, other extractors by length.
fn records(mut data: &[u8]) -> Result<Vec<(&str, &[u8])>, &'static str> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let sp = data
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or("a record without its length")?;
        let len = std::str::from_utf8(&data[..sp])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or("a record with a bad length")?;
        if len <= sp + 1 || len > data.len() {
            return Err("a record whose length does not fit the header");
        }
        let (rec, rest) = data.split_at(len);
        let body = rec[sp + 1..]
            .strip_suffix(b"\n")
            .ok_or("a record that does not end where its length says")?;
        if body.contains(&b'\n') {
            return Err("a record with a newline inside");
        }
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("a record without =")?;
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| "a key that is not UTF-8")?;
        out.push((key, &body[eq + 1..]));
        data = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &str) -> String {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        format!("{len} {key}={value}\n")
    }

    #[test]
    fn numbers_are_read_only_in_forms_every_tar_reads_alike() {
        for (f, v) in [
            (&b"0000644\0"[..], 0o644),
            (b"  644 \0\0", 0o644),
            (b"00000000014\0", 0o14),
            (b"000000000014", 0o14),
            (b"\0\0\0\0\0\0\0\0", 0),
            (b"\x80\0\0\0\0\0\0\0\0\0\x01\x00", 256),
        ] {
            assert_eq!(number(f, true), Some(v), "{f:?}");
        }
        for f in [
            &b"+0000644"[..],
            b"0000644x",
            b"06 44\0\0\0",
            b"\t0000644",
            b"\x000000644",
            b"\xff\xff\xff\xff\xff\xff\xff\xfe",
            b"\x80\x01\0\0\0\0\0\0\0\0\0\x01",
            b"\x81\0\0\0\0\0\0\0\0\0\0\x01",
        ] {
            assert_eq!(number(f, true), None, "{f:?}");
        }
        assert_eq!(number(b"\x80\0\0\0\0\0\0\x01", false), None);
    }

    #[test]
    fn a_ustar_prefix_counts_only_in_a_ustar_header() {
        let path = format!("{}/{}", "d".repeat(80), "f".repeat(80));
        let mut h = tar::Header::new_ustar();
        h.set_path(&path).unwrap();
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(0);
        h.set_cksum();
        assert_ne!(h.as_bytes()[345], 0, "the tar crate used the prefix");
        assert_eq!(block(h.as_bytes(), Some((path.as_bytes(), None))), [""; 0]);
        for version in [b"xx", b"\0\0", b"0 "] {
            let mut b = *h.as_bytes();
            b[263..265].copy_from_slice(version);
            assert_eq!(block(&b, Some((path.as_bytes(), None))).len(), 1);
        }
        // A GNU header has no prefix: its area holds the GNU fields.
        let mut gnu = tar::Header::new_gnu();
        gnu.set_mode(0o644);
        gnu.set_cksum();
        assert!(block(gnu.as_bytes(), Some((b"", None))).is_empty());
        let mut b = *gnu.as_bytes();
        b[400] = b'x';
        assert_eq!(block(&b, Some((b"", None))).len(), 1);
    }

    #[test]
    fn records_must_fill_the_header_exactly() {
        let two = format!("{}{}", rec("path", "a/b"), rec("mtime", "1.5"));
        assert_eq!(
            records(two.as_bytes()).unwrap(),
            [("path", &b"a/b"[..]), ("mtime", &b"1.5"[..])]
        );
        for bad in [
            format!("{}\n", rec("path", "a")),
            rec("path", "a").trim_end().to_string(),
            "11 path=a\nb\n".to_string(),
            "99 path=a\n".to_string(),
            "x path=a\n".to_string(),
            "9 patha\n\n".to_string(),
        ] {
            assert!(records(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_allowed_records_once_with_good_values() {
        let codes = |recs: &[(&str, &str)], long_name: bool| {
            let data: String = recs.iter().map(|(k, v)| rec(k, v)).collect();
            let mut out = Vec::new();
            pax_findings(data.as_bytes(), "f", long_name, false, &mut out);
            out.into_iter().map(|f| f.code).collect::<Vec<_>>()
        };
        let fine = [
            ("path", "f"),
            ("size", "12"),
            ("mtime", "-1.25"),
            ("uid", "0"),
            ("gname", "root"),
        ];
        assert_eq!(codes(&fine, false), []);
        assert_eq!(codes(&[("path", "f")], true), [Code::PAX_RECORD]);
        assert_eq!(
            codes(&[("size", "1"), ("size", "2")], false),
            [Code::PAX_RECORD]
        );
        assert_eq!(codes(&[("size", "1k")], false), [Code::PAX_RECORD]);
        assert_eq!(
            codes(
                &[("SCHILY.xattr.security.capability", "x"), ("comment", "")],
                false
            ),
            [Code::PAX_RECORD]
        );
        assert_eq!(
            codes(
                &[("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0")],
                false
            ),
            [Code::ENTRY_TYPE]
        );
    }
}
