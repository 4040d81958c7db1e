//! The raw bytes in front of an entry's header: the padding after the previous entry's data,
//! and the extension headers (GNU long names, pax records) that the `tar` crate folds into the
//! entry. They are judged here from their bytes, so that no record the validator does not
//! understand can make another extractor (GNU tar, libarchive) write something else than what
//! was verified, and no byte of a verified package goes unchecked.

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
