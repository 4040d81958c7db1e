//! The package manifest: what the package holds, as JSON at `.aapi/manifest.json`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::BTreeSet;

/// Directory holding the manifest and its signature, at the root of every package.
pub const META_DIR: &str = ".aapi";
/// Path of the manifest inside a package.
pub const MANIFEST_PATH: &str = ".aapi/manifest.json";
/// Path of the optional signature inside a package.
pub const SIGNATURE_PATH: &str = ".aapi/manifest.sig";
/// Value of the manifest's `format` field.
pub const FORMAT: &str = "aapi-plugin-package";
/// The manifest format version this validator writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The manifest of a plugin package (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for this schema.
    pub format_version: u32,
    /// Who and what the plugin is.
    pub plugin: Plugin,
    /// The ABI version the entry library's marker records.
    pub abi: Abi,
    /// The machine the entry library is built for.
    pub target: Target,
    /// Path of the plugin library the framework loads (a regular file listed in `files`).
    pub entry: String,
    /// Every directory, file and symlink of the payload, parents before children.
    pub files: Vec<Entry>,
}

/// Identity of the plugin, as its vendor declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// Plugin name: letters, digits and `._+-`, starting with a letter or digit.
    pub name: String,
    /// Plugin version: same characters as the name.
    pub version: String,
    /// Vendor: printable text.
    pub vendor: String,
    /// Workload types the plugin claims (at least one; letters, digits and `._-`).
    pub workload_types: Vec<String>,
}

/// An ABI version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Abi {
    /// `AAPI_ABI_MAJOR` of the plugin.
    pub major: u16,
    /// `AAPI_ABI_MINOR` of the plugin.
    pub minor: u16,
}

/// The target machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Architecture, as Rust names it (`x86_64`, `aarch64`, ...): see [`crate::elf::ARCHES`].
    pub arch: String,
    /// Operating system; `linux` is the only one in format version 1.
    pub os: String,
}

/// One payload entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawEntry", into = "RawEntry")]
pub struct Entry {
    /// Path relative to the package root, `/`-separated, canonical.
    pub path: String,
    /// What the entry is.
    pub kind: Kind,
}

/// The type of an entry and what is recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content.
        sha256: [u8; 32],
    },
    /// A symbolic link (its permission bits carry no meaning on Linux).
    Symlink {
        /// The link's target, relative, as stored.
        target: String,
    },
}

/// An entry as JSON: `type` says which of the other fields are present.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "octal")]
    mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex32")]
    sha256: Option<[u8; 32]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

impl TryFrom<RawEntry> for Entry {
    type Error = String;

    fn try_from(r: RawEntry) -> Result<Entry, String> {
        let p = &r.path;
        let kind = match (r.kind.as_str(), r.mode, r.size, r.sha256, r.target) {
            ("dir", Some(mode), None, None, None) => Kind::Dir { mode },
            ("file", Some(mode), Some(size), Some(sha256), None) => {
                Kind::File { mode, size, sha256 }
            }
            ("symlink", None, None, None, Some(target)) => Kind::Symlink { target },
            ("dir", ..) => return Err(format!("dir {p:?} must have mode and nothing else")),
            ("file", ..) => {
                return Err(format!(
                    "file {p:?} must have mode, size and sha256 and no target"
                ));
            }
            ("symlink", ..) => {
                return Err(format!("symlink {p:?} must have target and nothing else"));
            }
            (t, ..) => return Err(format!("{p:?} has type {t:?}, not dir, file or symlink")),
        };
        Ok(Entry { path: r.path, kind })
    }
}

impl From<Entry> for RawEntry {
    fn from(e: Entry) -> RawEntry {
        let mut r = RawEntry {
            path: e.path,
            kind: String::new(),
            mode: None,
            size: None,
            sha256: None,
            target: None,
        };
        match e.kind {
            Kind::Dir { mode } => {
                r.kind = "dir".into();
                r.mode = Some(mode);
            }
            Kind::File { mode, size, sha256 } => {
                r.kind = "file".into();
                r.mode = Some(mode);
                r.size = Some(size);
                r.sha256 = Some(sha256);
            }
            Kind::Symlink { target } => {
                r.kind = "symlink".into();
                r.target = Some(target);
            }
        }
        r
    }
}

impl Kind {
    /// "directory", "file" or "symlink".
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Dir { .. } => "directory",
            Kind::File { .. } => "file",
            Kind::Symlink { .. } => "symlink",
        }
    }

    /// Permission bits of a directory or file.
    pub fn mode(&self) -> Option<u32> {
        match self {
            Kind::Dir { mode } | Kind::File { mode, .. } => Some(*mode),
            Kind::Symlink { .. } => None,
        }
    }
}

impl Manifest {
    /// Parse manifest bytes. Only the JSON shape is checked here; [`Manifest::schema_errors`]
    /// checks the rules of the schema.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        #[derive(Deserialize)]
        struct Version {
            format: Option<String>,
            format_version: Option<u32>,
        }
        if let Ok(v) = serde_json::from_slice::<Version>(bytes)
            && v.format.as_deref() == Some(FORMAT)
            && v.format_version.is_some_and(|n| n != FORMAT_VERSION)
        {
            return Err(format!(
                "format version {} is not supported (this validator reads version {FORMAT_VERSION})",
                v.format_version.unwrap_or_default()
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The canonical bytes of this manifest: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        out.push(b'\n');
        out
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.files.iter().find(|e| e.path == path)
    }

    /// Every rule of the schema this manifest breaks (format, identity, target, entry, parents),
    /// as plain messages. Path-safety rules on the entries are checked apart, with their own codes.
    pub fn schema_errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.format != FORMAT {
            errs.push(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if !is_ident(&self.plugin.name, "._+-") {
            errs.push(format!(
                "plugin.name {:?} must be 1-128 letters, digits or ._+- starting with a letter or digit",
                self.plugin.name
            ));
        }
        if !is_ident(&self.plugin.version, "._+-") {
            errs.push(format!(
                "plugin.version {:?} must be 1-128 letters, digits or ._+- starting with a letter or digit",
                self.plugin.version
            ));
        }
        let v = &self.plugin.vendor;
        if v.is_empty() || v.len() > 256 || v.chars().any(crate::paths::is_control_or_format) {
            errs.push(format!(
                "plugin.vendor {v:?} must be 1-256 bytes without control or format characters (such as bidi overrides)"
            ));
        }
        if self.plugin.workload_types.is_empty() {
            errs.push("plugin.workload_types is empty".into());
        }
        let mut seen = BTreeSet::new();
        for w in &self.plugin.workload_types {
            if !is_ident(w, "._-") {
                errs.push(format!(
                    "workload type {w:?} must be 1-128 letters, digits or ._- starting with a letter or digit"
                ));
            }
            if !seen.insert(w) {
                errs.push(format!("workload type {w:?} is listed twice"));
            }
        }
        if crate::elf::arch(&self.target.arch).is_none() {
            errs.push(format!(
                "target.arch {:?} is not one of {}",
                self.target.arch,
                crate::elf::ARCHES
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.target.os != "linux" {
            errs.push(format!(
                "target.os {:?} is not supported (only \"linux\")",
                self.target.os
            ));
        }
        match self.get(&self.entry) {
            Some(Entry {
                kind: Kind::File { .. },
                ..
            }) => {}
            Some(e) => errs.push(format!(
                "entry {:?} is a {}, not a regular file",
                self.entry,
                e.kind.name()
            )),
            None => errs.push(format!("entry {:?} is not listed in files", self.entry)),
        }
        let mut dirs = BTreeSet::new();
        for e in &self.files {
            if e.path == META_DIR || e.path.starts_with(".aapi/") {
                errs.push(format!(
                    "files lists {:?} inside the reserved .aapi directory",
                    e.path
                ));
            }
            if let Some((parent, _)) = e.path.rsplit_once('/')
                && !dirs.contains(parent)
            {
                errs.push(format!(
                    "{:?} is listed before its parent directory {parent:?}, or the parent is not listed as a directory",
                    e.path
                ));
            }
            if let Some(m) = e.kind.mode()
                && m > 0o7777
            {
                errs.push(format!("{:?} has mode {m:o}, beyond 07777", e.path));
            }
            if let Kind::Symlink { target } = &e.kind
                && (target.is_empty()
                    || target.len() > crate::paths::MAX_PATH
                    || target.chars().any(crate::paths::is_control_or_format))
            {
                errs.push(format!(
                    "symlink {:?} has an empty, overlong, control- or format-character target",
                    e.path
                ));
            }
            if matches!(e.kind, Kind::Dir { .. }) {
                dirs.insert(e.path.as_str());
            }
        }
        errs
    }

    /// Total size of the listed regular files.
    pub fn payload_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|e| match e.kind {
                Kind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

/// Compare two plugin versions. Before the first `-` is the release, compared as Debian
/// compares versions: digit runs as numbers (`1.10` is newer than `1.9`, `1.02` equals `1.2`),
/// other characters letters first (`1.0a` is older than `1.0.1`), a longer version newer than
/// its prefix (`1.0.1` is newer than `1.0`). After it is a pre-release, older than the release
/// itself (`2.0-rc1` is older than `2.0`), and compared the same way with another pre-release.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_rel, a_pre) = a.split_once('-').map_or((a, None), |(r, p)| (r, Some(p)));
    let (b_rel, b_pre) = b.split_once('-').map_or((b, None), |(r, p)| (r, Some(p)));
    debian_order(a_rel.as_bytes(), b_rel.as_bytes()).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => debian_order(a.as_bytes(), b.as_bytes()),
    })
}

/// Debian's version order (`verrevcmp`) of `a` and `b`.
fn debian_order(a: &[u8], b: &[u8]) -> Ordering {
    // The weight of a character outside a digit run: the end and digits lowest, then letters,
    // then everything else.
    let weight = |c: Option<&u8>| match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(&c) if c.is_ascii_alphabetic() => u32::from(c),
        Some(&c) => u32::from(c) + 256,
    };
    let digit = |s: &[u8], i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (x, y) = (weight(a.get(i)), weight(b.get(j)));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            first = first.then(a[i].cmp(&b[j]));
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first.is_ne() {
            return first;
        }
    }
    Ordering::Equal
}

/// A name: 1-128 ASCII letters, digits or `extra`, starting with a letter or digit.
fn is_ident(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from lower-case hex of exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

mod octal {
    use super::*;

    pub fn serialize<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match mode {
            Some(m) => s.serialize_str(&format!("{m:04o}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(serde::de::Error::custom(format!(
                "mode {s:?} is not an octal string such as \"0755\""
            )));
        }
        u32::from_str_radix(&s, 8)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

mod hex32 {
    use super::*;

    pub fn serialize<S: Serializer>(h: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => s.serialize_str(&hex(h)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        unhex(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("sha256 {s:?} is not 64 lower-case hex digits"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            plugin: Plugin {
                name: "demo".into(),
                version: "1.2.3".into(),
                vendor: "Example Corp.".into(),
                workload_types: vec!["files".into()],
            },
            abi: Abi { major: 1, minor: 0 },
            target: Target {
                arch: "x86_64".into(),
                os: "linux".into(),
            },
            entry: "lib/libdemo.so".into(),
            files: vec![
                Entry {
                    path: "lib".into(),
                    kind: Kind::Dir { mode: 0o755 },
                },
                Entry {
                    path: "lib/libdemo.so".into(),
                    kind: Kind::File {
                        mode: 0o755,
                        size: 3,
                        sha256: [0xab; 32],
                    },
                },
                Entry {
                    path: "lib/libdemo.so.1".into(),
                    kind: Kind::Symlink {
                        target: "libdemo.so".into(),
                    },
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_reads_like_the_documented_schema() {
        let m = sample();
        let bytes = m.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""mode": "0755""#), "{text}");
        assert!(text.contains(r#""type": "symlink""#), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "{text}");
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert!(m.schema_errors().is_empty(), "{:?}", m.schema_errors());
    }

    #[test]
    fn rejects_unknown_fields_bad_modes_and_other_versions() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let extra = text.replacen("\"entry\"", "\"surprise\": 1,\n  \"entry\"", 1);
        assert!(Manifest::parse(extra.as_bytes()).is_err());
        let bad_mode = text.replacen("\"0755\"", "\"rwxr-xr-x\"", 1);
        assert!(Manifest::parse(bad_mode.as_bytes()).is_err());
        let v2 = text.replacen("\"format_version\": 1", "\"format_version\": 2", 1);
        let err = Manifest::parse(v2.as_bytes()).unwrap_err();
        assert!(err.contains("format version 2"), "{err}");
    }

    #[test]
    fn schema_rules_are_enforced() {
        let mut m = sample();
        m.plugin.name = "../evil".into();
        m.entry = "lib".into();
        m.target.arch = "vax".into();
        m.files.swap(0, 1);
        let errs = m.schema_errors().join("\n");
        for part in ["plugin.name", "not a regular file", "target.arch", "parent"] {
            assert!(errs.contains(part), "{part} missing in {errs}");
        }
    }

    #[test]
    fn versions_compare_as_their_numbers_say() {
        use Ordering::*;
        for (a, b, want) in [
            ("1.9", "1.10", Less),
            ("1.0", "1.0.1", Less),
            ("1.02", "1.2", Equal),
            ("2.0.0", "10.0", Less),
            ("1.0a", "1.0.1", Less),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0a", Less),
            ("2.0-rc1", "2.0", Less),
            ("2.0-rc1", "2.0-rc2", Less),
            ("2.0-rc10", "2.0-rc9", Greater),
            ("2.0-rc1", "1.9", Greater),
            ("1.2.3+build7", "1.2.3", Greater),
            ("18446744073709551616123", "18446744073709551616124", Less),
        ] {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn hex_round_trip() {
        let b = [0u8, 1, 0xfe, 0xff];
        assert_eq!(unhex::<4>(&hex(&b)), Some(b));
        assert_eq!(unhex::<4>("0001FEFF"), None);
        assert_eq!(unhex::<4>("0001fe"), None);
    }
}
