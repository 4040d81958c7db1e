//! Hostile packages: each one gets its finding code from the library and exit code 1 from the
//! binary, and installing it changes nothing anywhere.

mod common;

use aapi_validator::Code::{self, *};
use aapi_validator::sign::SecretKey;
use common::*;
use std::fs;
use std::path::Path;

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Exactly the codes reported.
    expect: Vec<Code>,
    /// Extra `verify`/`install` arguments.
    args: Vec<String>,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: &[Code]) -> Case {
    Case {
        name,
        bytes,
        expect: expect.to_vec(),
        args: vec![],
    }
}

/// A good package with `extra` appended after its payload.
fn with(extra: impl FnOnce(&mut Raw)) -> Vec<u8> {
    let entries = payload(plugin(Variant::Good));
    let mut r = Raw::package(&manifest_of(&entries), &entries);
    extra(&mut r);
    r.finish()
}

/// A good package whose entry `path` is preceded by what `ext` writes (extension headers).
fn before(path: &str, ext: impl FnOnce(&mut Raw)) -> Vec<u8> {
    let entries = payload(plugin(Variant::Good));
    let mut r = Raw::package(&manifest_of(&entries), &[]);
    let mut ext = Some(ext);
    for e in &entries {
        if e.path() == path {
            (ext.take().expect("one entry has the path"))(&mut r);
        }
        r.entry(e);
    }
    assert!(ext.is_none(), "{path} is not in the payload");
    r.finish()
}

/// A good package whose entry `path` is written by `write` instead.
fn replacing(path: &str, write: impl FnOnce(&mut Raw)) -> Vec<u8> {
    let entries = payload(plugin(Variant::Good));
    let mut r = Raw::package(&manifest_of(&entries), &[]);
    let mut write = Some(write);
    for e in &entries {
        if e.path() == path {
            (write.take().expect("one entry has the path"))(&mut r);
        } else {
            r.entry(e);
        }
    }
    r.finish()
}

/// A package whose manifest truthfully lists `entries`.
fn honest(entries: Vec<E>) -> Vec<u8> {
    Raw::package(&manifest_of(&entries), &entries).finish()
}

/// A good package with one byte of the padding after README's data set.
fn dirty_padding() -> Vec<u8> {
    let mut b = good_package();
    let mut ar = tar::Archive::new(&b[..]);
    let end = ar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == b"README")
        .map(|e| (e.raw_file_position() + e.size()) as usize)
        .unwrap();
    assert_eq!(b[end + 100], 0);
    b[end + 100] = b'!';
    b
}

/// A good package whose entry `path` has its header block changed by `edit` (the checksum is
/// made right again, so the `tar` crate reads the header).
fn patched(path: &str, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut b = good_package();
    let at = tar::Archive::new(&b[..])
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == path.as_bytes())
        .map(|e| e.raw_header_position() as usize)
        .unwrap();
    let h = &mut b[at..at + 512];
    edit(h);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// The header of `path` turned into a ustar header (magic `ustar\0`) with version `version`
/// and `prefix` in its prefix field.
fn with_prefix(path: &str, version: &[u8; 2], prefix: &str) -> Vec<u8> {
    patched(path, |h| {
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(version);
        h[345..500].fill(0);
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    })
}

fn flipped_library() -> Vec<u8> {
    let good = plugin(Variant::Good);
    let entries = payload(good.clone());
    let manifest = manifest_of(&entries);
    let mut lib = good;
    // Flip a byte of the compiler's note in .comment: still a well-formed ELF file.
    let at = lib
        .windows(4)
        .position(|w| w == b"GCC:")
        .expect("a .comment section")
        + 1;
    lib[at] ^= 0x20;
    let mut tampered = entries.clone();
    tampered[2] = E::File(ENTRY, 0o755, lib);
    Raw::package(&manifest, &tampered).finish()
}

fn cases(dir: &Path) -> Vec<Case> {
    let good = || payload(plugin(Variant::Good));
    let mut out = vec![
        case(
            "traversal",
            with(|r| r.file(b"../evil", 0o644, b"x")),
            &[PATH_TRAVERSAL],
        ),
        case(
            "deep-traversal",
            with(|r| r.file(b"lib/../../evil", 0o644, b"x")),
            &[PATH_TRAVERSAL],
        ),
        case(
            "absolute",
            with(|r| r.file(b"/tmp/evil", 0o644, b"x")),
            &[PATH_ABSOLUTE],
        ),
        case(
            "dot-path",
            with(|r| r.file(b"./README2", 0o644, b"x")),
            &[PATH_INVALID],
        ),
        // Shown as lib/os.evil... reversed: a right-to-left override.
        case(
            "bidi-path",
            with(|r| r.file("lib/\u{202e}os.evil".as_bytes(), 0o644, b"x")),
            &[PATH_INVALID],
        ),
        // A vendor name that displays as another (X, then Y shown right to left).
        case(
            "vendor-bidi",
            {
                let entries = good();
                let mut m = manifest_of(&entries);
                m.plugin.vendor = "Example Corp.\u{202e}.proC elpmaxE".into();
                Raw::package(&m, &entries).finish()
            },
            &[MANIFEST_INVALID],
        ),
        case(
            "newline-path",
            with(|r| r.file(b"a\nb", 0o644, b"x")),
            &[PATH_INVALID],
        ),
        // The kernel fails on libdemo.so/ (ENOTDIR): the link would not work.
        case(
            "symlink-slash-after-file",
            honest([good(), vec![E::Link("lib/libdemo.so.2", "libdemo.so/")]].concat()),
            &[SYMLINK_DANGLING],
        ),
        case(
            "symlink-escape",
            honest([good(), vec![E::Link("esc", "../../etc/passwd")]].concat()),
            &[SYMLINK_ESCAPE],
        ),
        case(
            "symlink-absolute",
            honest([good(), vec![E::Link("abs", "/etc/passwd")]].concat()),
            &[SYMLINK_ESCAPE],
        ),
        case(
            "symlink-dangling",
            honest([good(), vec![E::Link("gone", "lib/nothere.so")]].concat()),
            &[SYMLINK_DANGLING],
        ),
        // A symlink to outside, then a file written through it.
        case(
            "write-through-symlink",
            with(|r| {
                r.symlink(b"out", b"/tmp");
                r.file(b"out/evil", 0o644, b"x");
            }),
            &[FILE_EXTRA, FILE_EXTRA, SYMLINK_ESCAPE, SYMLINK_THROUGH],
        ),
        // The same, listed in the manifest (whose own rules then fail too).
        case(
            "write-through-symlink-listed",
            honest(
                [
                    good(),
                    vec![
                        E::Link("out", "lib"),
                        E::File("out/evil.so", 0o644, b"x".to_vec()),
                    ],
                ]
                .concat(),
            ),
            &[MANIFEST_INVALID, SYMLINK_THROUGH],
        ),
        // Pax records that make GNU tar write other bytes, names or attributes than those the
        // manifest describes.
        case(
            "pax-sparse",
            before("README", |r| {
                r.pax(&[
                    ("GNU.sparse.major", b"0"),
                    ("GNU.sparse.minor", b"1"),
                    ("GNU.sparse.name", ENTRY.as_bytes()),
                    ("GNU.sparse.size", b"12"),
                    ("GNU.sparse.map", b"0,12"),
                ])
            }),
            &[ENTRY_TYPE],
        ),
        case(
            "pax-file-capability",
            before("README", |r| {
                r.pax(&[(
                    "SCHILY.xattr.security.capability",
                    b"\x01\x00\x00\x02\xc0\x00\x00\x00",
                )])
            }),
            &[PAX_RECORD],
        ),
        case(
            "pax-acl-and-xattr",
            before(ENTRY, |r| {
                r.pax(&[
                    ("SCHILY.acl.access", b"user::rwx,user:nobody:rwx"),
                    ("LIBARCHIVE.xattr.user.x", b"eA=="),
                    ("RHT.security.selinux", b"system_u:object_r:bin_t:s0"),
                ])
            }),
            &[PAX_RECORD],
        ),
        case(
            "pax-unknown",
            before("README", |r| r.pax(&[("comment", b"hello")])),
            &[PAX_RECORD],
        ),
        // The tar crate takes the first path record, GNU tar the last.
        case(
            "pax-twice",
            before("README", |r| {
                r.pax(&[("path", b"README"), ("path", b"lib/evil.so")])
            }),
            &[PAX_RECORD],
        ),
        // The tar crate takes the GNU long name, GNU tar the pax path.
        case(
            "pax-and-long-name",
            before("README", |r| {
                r.raw(
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    0o644,
                    b"README\0",
                    None,
                );
                r.pax(&[("path", b"lib/evil.so")]);
            }),
            &[PAX_RECORD],
        ),
        // The tar crate skips a record whose length is wrong; GNU tar reads by length.
        case(
            "pax-malformed",
            before("README", |r| r.pax_data(b"22 path=lib/evil.so\n\n")),
            &[ARCHIVE_MALFORMED],
        ),
        // GNU tar and libarchive read the prefix of any header with magic ustar\0, the tar
        // crate only with version 00: README would be written as tmp/escaped/README.
        case(
            "ustar-prefix-other-version",
            with_prefix("README", b"xx", "tmp/escaped"),
            &[ARCHIVE_HEADER],
        ),
        case(
            "ustar-prefix-absolute",
            with_prefix(ENTRY, b"\0\0", "/tmp/abs"),
            &[ARCHIVE_HEADER],
        ),
        case(
            "magic-unknown",
            patched("README", |h| h[257..265].copy_from_slice(b"ustarX00")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "v7-header",
            patched("README", |h| h[257..265].fill(0)),
            &[ARCHIVE_HEADER],
        ),
        // The tar crate reads "+14" as octal 14, GNU tar as base 64.
        case(
            "number-with-sign",
            patched("README", |h| h[124..136].copy_from_slice(b"+0000000014\0")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "number-with-trailing-text",
            patched("README", |h| h[108..116].copy_from_slice(b"0 hello\0")),
            &[ARCHIVE_HEADER],
        ),
        // Bytes nothing reads: after the NUL that ends a name, a link name on a file, the GNU
        // sparse map of a file that is not sparse, device numbers, the header's last bytes.
        case(
            "bytes-after-name",
            patched("README", |h| h[7..20].copy_from_slice(b"HIDDEN-IN-NAM")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "link-name-on-file",
            patched("README", |h| h[157..163].copy_from_slice(b"HIDDEN")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "gnu-sparse-area",
            patched("README", |h| h[386..392].copy_from_slice(b"HIDDEN")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "device-numbers",
            patched("README", |h| h[329..337].copy_from_slice(b"0000010\0")),
            &[ARCHIVE_HEADER],
        ),
        case(
            "header-tail",
            patched("README", |h| h[505] = b'!'),
            &[ARCHIVE_HEADER],
        ),
        case(
            "mode-type-bits",
            patched("README", |h| h[100..108].copy_from_slice(b"0100644\0")),
            &[ARCHIVE_HEADER],
        ),
        // A long name gives the path; the header's own name field still holds bytes.
        case(
            "name-not-the-path",
            replacing("README", |r| {
                r.raw(
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    0o644,
                    b"README\0",
                    None,
                );
                r.file(b"lib/evil.so", 0o644, b"demo plugin\n");
            }),
            &[ARCHIVE_HEADER],
        ),
        case(
            "extension-header-bytes-after-name",
            replacing("README", |r| {
                r.raw(
                    b"././@LongLink\0HIDDEN",
                    tar::EntryType::GNULongName,
                    0o644,
                    b"README\0",
                    None,
                );
                r.file(b"README", 0o644, b"demo plugin\n");
            }),
            &[ARCHIVE_HEADER],
        ),
        // Bytes nothing reads: the padding of an entry's data and of a pax header.
        case("padding-after-data", dirty_padding(), &[ARCHIVE_PADDING]),
        case(
            "padding-after-pax-records",
            {
                let mut b = before("README", |r| r.pax(&[("mtime", b"1")]));
                let at = b.windows(8).position(|w| w == b"mtime=1\n").unwrap() + 8;
                assert_eq!(b[at], 0);
                b[at] = b'!';
                b
            },
            &[ARCHIVE_PADDING],
        ),
        case(
            "duplicate",
            with(|r| r.file(b"README", 0o644, b"replaced\n")),
            &[PATH_DUPLICATE],
        ),
        case(
            "truncated-data",
            good_package()[..9000].to_vec(),
            // The end-of-archive marker is missing, and so is part of the library.
            &[ARCHIVE_TRUNCATED, ARCHIVE_TRUNCATED],
        ),
        case(
            "truncated-end",
            {
                let b = good_package();
                b[..b.len() - 1024].to_vec()
            },
            &[ARCHIVE_TRUNCATED],
        ),
        case(
            "trailing-data",
            [
                good_package(),
                b"#!/bin/sh\nrm -rf /\n".to_vec(),
                vec![0; 1024],
            ]
            .concat(),
            &[ARCHIVE_TRAILING_DATA],
        ),
        case(
            "not-an-archive",
            b"hello world, not a tar file\n".repeat(40),
            &[ARCHIVE_MALFORMED],
        ),
        case(
            "manifest-does-not-parse",
            {
                let mut r = Raw::new();
                r.file(
                    b".aapi/manifest.json",
                    0o644,
                    b"{\"format\": \"aapi-plugin-package\", ",
                );
                for e in good() {
                    r.entry(&e);
                }
                r.finish()
            },
            &[MANIFEST_INVALID],
        ),
        case(
            "manifest-version",
            {
                let entries = good();
                let text = String::from_utf8(manifest_of(&entries).to_bytes()).unwrap();
                let text = text.replace("\"format_version\": 1", "\"format_version\": 7");
                let mut r = Raw::new();
                r.file(b".aapi/manifest.json", 0o644, text.as_bytes());
                for e in &entries {
                    r.entry(e);
                }
                r.finish()
            },
            &[MANIFEST_VERSION],
        ),
        case(
            "manifest-missing",
            {
                let mut r = Raw::new();
                for e in good() {
                    r.entry(&e);
                }
                r.finish()
            },
            &[MANIFEST_MISSING],
        ),
        case(
            "manifest-not-first",
            {
                let entries = good();
                let mut r = Raw::new();
                r.entry(&entries[0]);
                r.file(
                    b".aapi/manifest.json",
                    0o644,
                    &manifest_of(&entries).to_bytes(),
                );
                for e in &entries[1..] {
                    r.entry(e);
                }
                r.finish()
            },
            &[MANIFEST_NOT_FIRST],
        ),
        case(
            "reserved",
            with(|r| r.file(b".aapi/hook.sh", 0o755, b"x")),
            &[PATH_RESERVED],
        ),
        case("flipped-byte", flipped_library(), &[FILE_DIGEST]),
        case(
            "extra-file",
            with(|r| r.file(b"lib/extra.so", 0o755, b"x")),
            &[FILE_EXTRA],
        ),
        case(
            "missing-file",
            {
                let entries = good();
                Raw::package(&manifest_of(&entries), &entries[1..]).finish()
            },
            &[FILE_MISSING],
        ),
        case(
            "changed-mode",
            {
                let entries = good();
                let mut r = Raw::package(&manifest_of(&entries), &[]);
                for e in &entries {
                    match e {
                        E::File("README", _, d) => r.file(b"README", 0o755, d),
                        e => r.entry(e),
                    }
                }
                r.finish()
            },
            &[FILE_MODE],
        ),
        case(
            "wrong-arch",
            honest(payload(plugin(Variant::WrongArch))),
            &[ELF_ARCH],
        ),
        case(
            "missing-symbol",
            honest(payload(plugin(Variant::MissingSymbol))),
            &[ELF_SYMBOL_MISSING],
        ),
        case(
            "wrong-abi-marker",
            honest(payload(plugin(Variant::WrongAbi))),
            &[ABI_INCOMPATIBLE, ABI_MISMATCH],
        ),
        case(
            "not-a-shared-object",
            honest(payload(plugin(Variant::Pie))),
            &[ELF_NOT_SHARED_OBJECT],
        ),
        case(
            "wrong-os",
            honest(payload(plugin(Variant::WrongOs))),
            &[ELF_OS],
        ),
        case(
            "marker-bad-magic",
            honest(payload(plugin(Variant::BadMagic))),
            &[ELF_MARKER_INVALID],
        ),
        case(
            "marker-missing",
            honest(payload(plugin(Variant::NoMarker))),
            &[ELF_MARKER_MISSING],
        ),
        case(
            "symbol-wrong-type",
            honest(payload(plugin(Variant::FlushAsData))),
            &[ELF_SYMBOL_TYPE],
        ),
        case(
            "sticky",
            honest([good(), vec![E::Dir("tmp", 0o1755)]].concat()),
            &[MODE_STICKY],
        ),
        case(
            "changed-type",
            {
                let entries = good();
                let mut r = Raw::package(&manifest_of(&entries), &entries[1..]);
                r.entry(&E::Dir("README", 0o755));
                r.finish()
            },
            &[FILE_TYPE],
        ),
        case(
            "retargeted-symlink",
            {
                let entries = good();
                let mut r = Raw::package(&manifest_of(&entries), &entries[..3]);
                r.symlink(b"lib/libdemo.so.1", b"../README");
                r.finish()
            },
            &[SYMLINK_TARGET],
        ),
        case(
            "not-elf",
            honest(payload(b"#!/bin/sh\necho not a library\n".to_vec())),
            &[ELF_INVALID],
        ),
        case(
            "fifo",
            with(|r| r.raw(b"lib/pipe", tar::EntryType::Fifo, 0o644, b"", None)),
            &[SPECIAL_FILE],
        ),
        case(
            "device",
            with(|r| r.raw(b"dev-sda", tar::EntryType::Block, 0o644, b"", None)),
            &[SPECIAL_FILE],
        ),
        case(
            "hard-link",
            with(|r| {
                r.raw(
                    b"passwd",
                    tar::EntryType::Link,
                    0o644,
                    b"",
                    Some(b"/etc/passwd"),
                )
            }),
            &[ENTRY_TYPE],
        ),
        case(
            "setuid",
            honest(
                [
                    good(),
                    vec![E::File("helper", 0o4755, b"#!/bin/sh\n".to_vec())],
                ]
                .concat(),
            ),
            &[MODE_SETID],
        ),
        case(
            "world-writable",
            honest([good(), vec![E::File("conf", 0o666, b"x=1\n".to_vec())]].concat()),
            &[MODE_WRITABLE],
        ),
        // Archive bombs: sizes and counts past the bounds, and a compressed package that
        // expands too much.
        case(
            "bomb-huge-file",
            with(|r| r.claim(b"huge", 1 << 40)),
            &[LIMIT_FILE_SIZE],
        ),
        case(
            "bomb-ratio",
            gzip(&honest(
                [good(), vec![E::File("zeros", 0o644, vec![0; 8 << 20])]].concat(),
            )),
            &[LIMIT_COMPRESSION_RATIO],
        ),
        case(
            "bomb-long-name",
            with(|r| {
                let name = vec![b'a'; 2 << 20];
                r.raw(
                    b"././@LongLink",
                    tar::EntryType::GNULongName,
                    0o644,
                    &name,
                    None,
                );
                r.file(b"short", 0o644, b"x");
            }),
            &[LIMIT_METADATA],
        ),
    ];
    out.push(Case {
        name: "bomb-entries",
        bytes: with(|r| {
            for i in 0..40 {
                r.file(format!("f{i}").as_bytes(), 0o644, b"");
            }
        }),
        expect: vec![LIMIT_ENTRIES],
        args: vec!["--max-entries".into(), "20".into()],
    });
    out.push(Case {
        name: "bomb-total-size",
        bytes: with(|r| r.file(b"big", 0o644, &vec![7u8; 200 << 10])),
        expect: vec![LIMIT_TOTAL_SIZE],
        args: vec!["--max-total-size".into(), "100K".into()],
    });

    // Signatures: the key files live in `dir`.
    let key = SecretKey::generate().unwrap();
    let (_, public) = key.save(&dir.join("trusted")).unwrap();
    let other = SecretKey::generate().unwrap();
    let (_, other_pub) = other.save(&dir.join("other")).unwrap();
    let entries = good();
    let manifest = manifest_of(&entries);
    let signed = |m: &aapi_validator::Manifest, sig: &[u8], payload: &[E]| {
        let mut r = Raw::new();
        r.file(b".aapi/manifest.json", 0o644, &m.to_bytes());
        r.file(b".aapi/manifest.sig", 0o644, sig);
        for e in payload {
            r.entry(e);
        }
        r.finish()
    };
    let sig = key.sign(&manifest.to_bytes(), &manifest);
    let keyed = |name, bytes, expect: &[Code], public: &Path| Case {
        name,
        bytes,
        expect: expect.to_vec(),
        args: vec!["--key".into(), public.display().to_string()],
    };
    let mut bad_sig = String::from_utf8(sig.clone()).unwrap();
    let at = bad_sig.find("\"signature\": \"").unwrap() + 14;
    let flipped = if &bad_sig[at..at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    bad_sig.replace_range(at..at + 1, flipped);
    out.push(keyed(
        "bad-signature",
        signed(&manifest, bad_sig.as_bytes(), &entries),
        &[SIGNATURE_INVALID],
        &public,
    ));
    out.push(keyed(
        "untrusted-key",
        signed(&manifest, &sig, &entries),
        &[SIGNATURE_UNTRUSTED_KEY],
        &other_pub,
    ));
    out.push(keyed(
        "unsigned",
        good_package(),
        &[SIGNATURE_MISSING],
        &public,
    ));
    out.push(keyed(
        "signature-malformed",
        signed(&manifest, b"not json", &entries),
        &[SIGNATURE_MALFORMED],
        &public,
    ));
    // Without a key, a signature that is not one is found all the same.
    out.push(case(
        "signature-malformed-no-key",
        signed(&manifest, b"{}", &entries),
        &[SIGNATURE_MALFORMED],
    ));
    out.push(case(
        "signature-not-json-no-key",
        signed(&manifest, b"not json", &entries),
        &[SIGNATURE_MALFORMED],
    ));
    out.push(case(
        "signature-not-second",
        with(|r| r.file(b".aapi/manifest.sig", 0o644, &sig)),
        &[SIGNATURE_NOT_SECOND],
    ));
    // A valid signature whose statement names other metadata than the manifest.
    let mut other_meta = manifest.clone();
    other_meta.plugin.version = "9.9.9".into();
    let wrong_meta = key.sign(&manifest.to_bytes(), &other_meta);
    out.push(keyed(
        "signature-metadata",
        signed(&manifest, &wrong_meta, &entries),
        &[SIGNATURE_METADATA],
        &public,
    ));
    // The payload and manifest were both changed after signing: the old signature stays
    // valid Ed25519 but covers another manifest.
    let mut tampered = entries.clone();
    tampered[0] = E::File("README", 0o644, b"trojan\n".to_vec());
    out.push(keyed(
        "resigned-manifest",
        signed(&manifest_of(&tampered), &sig, &tampered),
        &[SIGNATURE_MANIFEST],
        &public,
    ));
    out.push(case(
        "resigned-manifest-no-key",
        signed(&manifest_of(&tampered), &sig, &tampered),
        &[SIGNATURE_MANIFEST],
    ));
    out
}

#[test]
fn the_good_package_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("good.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    assert_eq!(codes(&pkg), vec![]);
    let o = run(&[&"verify", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("OK "), "{}", stdout(&o));
}

#[test]
fn harmless_pax_records_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("pax.aapkg");
    let bytes = before(ENTRY, |r| {
        r.pax(&[
            ("path", ENTRY.as_bytes()),
            ("mtime", b"1700000000.25"),
            ("atime", b"1700000000"),
            ("uid", b"0"),
            ("gid", b"0"),
            ("uname", b"root"),
            ("gname", b"root"),
        ])
    });
    fs::write(&pkg, bytes).unwrap();
    assert_eq!(codes(&pkg), vec![]);
}

#[test]
fn each_hostile_package_gets_its_codes_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for c in cases(dir.path()) {
        let pkg = dir.path().join(format!("{}.aapkg", c.name));
        fs::write(&pkg, &c.bytes).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &"--json", &pkg];
        args.extend(c.args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let o = run(&args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("{}: not JSON ({e}): {}", c.name, stdout(&o));
        });
        let mut found: Vec<String> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["code"].as_str().unwrap().to_string())
            .collect();
        found.sort();
        let want: Vec<String> = c.expect.iter().map(|c| c.as_str().to_string()).collect();
        if o.status.code() != Some(1) || found != want || v["valid"] != false {
            failures.push(format!(
                "{}: exit {:?}, codes {found:?}, want {want:?}\n{}",
                c.name,
                o.status.code(),
                v["findings"]
            ));
        }
        // The human report names the same codes, one line each, and says INVALID.
        let mut text_args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &pkg];
        text_args.extend(c.args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let text = stdout(&run(&text_args));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), found.len() + 1, "{}: {text}", c.name);
        assert!(
            lines.last().unwrap().starts_with("INVALID "),
            "{}: {text}",
            c.name
        );
        for code in &found {
            assert!(text.contains(code.as_str()), "{}: {text}", c.name);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn installing_hostile_packages_writes_nothing_anywhere() {
    let w = tempfile::tempdir().unwrap();
    let keys = w.path().join("keys");
    let plugins = w.path().join("plugins");
    let sentinel = w.path().join("sentinel");
    let pkgs = w.path().join("pkgs");
    for d in [&keys, &plugins, &sentinel, &pkgs, &sentinel.join("etc")] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(sentinel.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    let dest = plugins.join("demo");
    let good = pkgs.join("good.aapkg");
    fs::write(&good, good_package()).unwrap();
    let o = run(&[&"install", &good, &"--dest", &dest]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    let cases = cases(&keys);
    for c in &cases {
        fs::write(pkgs.join(format!("{}.aapkg", c.name)), &c.bytes).unwrap();
    }
    let before = (snapshot(&plugins), snapshot(&sentinel), snapshot(&pkgs));
    for c in &cases {
        let pkg = pkgs.join(format!("{}.aapkg", c.name));
        // Run from inside the sentinel tree so that relative writes would land there.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aapi-validator"));
        cmd.current_dir(sentinel.join("etc"))
            .arg("install")
            .arg(&pkg)
            .arg("--dest")
            .arg(&dest)
            .args(&c.args);
        let o = cmd.output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{}: {}", c.name, stdout(&o));
        assert!(
            stdout(&o).contains(c.expect[0].as_str()),
            "{}: {}",
            c.name,
            stdout(&o)
        );
        let after = (snapshot(&plugins), snapshot(&sentinel), snapshot(&pkgs));
        assert!(after == before, "{}: something changed", c.name);
    }
}

#[test]
fn could_not_run_is_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.aapkg");
    let o = run(&[&"verify", &missing]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read"));
    let o = run(&[&"verify", &"--json", &missing]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["valid"].is_null() && v["error"].is_string(), "{v}");
    assert_eq!(run(&[&"verify"]).status.code(), Some(2), "usage error");
    assert_eq!(run(&[&"frobnicate"]).status.code(), Some(2), "usage error");
    let pkg = dir.path().join("good.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let junk_key = dir.path().join("junk.pub");
    fs::write(&junk_key, "not a key\n").unwrap();
    assert_eq!(
        run(&[&"verify", &pkg, &"--key", &junk_key]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&[&"verify", &pkg, &"--max-file-size", &"lots"])
            .status
            .code(),
        Some(2)
    );
    // A fifo given as the package is refused without waiting for a writer.
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_eq!(run(&[&"verify", &fifo]).status.code(), Some(2));
    // No panic trace for anything above.
    for args in [vec!["verify"], vec!["verify", "/nonexistent"]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
            .args(args)
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}

#[test]
fn a_package_cut_inside_a_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("cut.aapkg");
    let good = good_package();
    let mut ar = tar::Archive::new(&good[..]);
    let lib = ar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path_bytes().as_ref() == ENTRY.as_bytes())
        .unwrap();
    let (start, size) = (lib.raw_file_position(), lib.size());
    let cut = &good[..(start + 100) as usize];
    fs::write(&pkg, cut).unwrap();
    let o = run(&[&"verify", &pkg]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "ARCHIVE_TRUNCATED       the archive ends without its end-of-archive marker\n\
             ARCHIVE_TRUNCATED       {ENTRY}: only 100 of {size} bytes are in the archive\n\
             INVALID {} (2 findings)\n",
            pkg.display()
        )
    );
    // Compressed, the data is streamed: the entry being read when the archive ends is named.
    let gz = dir.path().join("cut.aapkg.gz");
    fs::write(&gz, gzip(cut)).unwrap();
    let o = run(&[&"verify", &gz]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "ARCHIVE_TRUNCATED       {ENTRY}: the archive ends early (unexpected end of file)\n\
             INVALID {} (1 finding)\n",
            gz.display()
        )
    );
}

#[test]
fn compressed_packages_are_checked_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("good.aapkg.gz");
    fs::write(&pkg, gzip(&good_package())).unwrap();
    assert_eq!(codes(&pkg), vec![]);
    fs::write(&pkg, gzip(&flipped_library())).unwrap();
    assert_eq!(codes(&pkg), vec![FILE_DIGEST]);
    fs::write(&pkg, gzip(&dirty_padding())).unwrap();
    assert_eq!(codes(&pkg), vec![ARCHIVE_PADDING]);
    fs::write(&pkg, gzip(&honest(payload(plugin(Variant::WrongArch))))).unwrap();
    assert_eq!(codes(&pkg), vec![ELF_ARCH]);
    let gz = gzip(&good_package());
    fs::write(&pkg, &gz[..gz.len() - 9]).unwrap();
    assert_eq!(codes(&pkg), vec![ARCHIVE_TRUNCATED]);
    fs::write(&pkg, [gz.clone(), b"appended".to_vec()].concat()).unwrap();
    assert_eq!(codes(&pkg), vec![ARCHIVE_TRAILING_DATA]);
    // The optional fields of a gzip header (extra data, file name, comment) carry bytes
    // nothing checks; its time and OS bytes are free.
    for (flag, field) in [
        (0x04u8, &b"\x05\x00XY\x01\x00E"[..]),
        (0x08, b"hidden-name.tar\0"),
        (0x10, b"any hidden payload\0"),
    ] {
        let mut b = gz[..10].to_vec();
        b[3] = flag;
        b.extend_from_slice(field);
        b.extend_from_slice(&gz[10..]);
        fs::write(&pkg, b).unwrap();
        assert_eq!(codes(&pkg), vec![ARCHIVE_HEADER], "flag {flag:#x}");
    }
    let mut free = gz.clone();
    free[4..8].copy_from_slice(&1_700_000_000u32.to_le_bytes());
    free[9] = 3;
    fs::write(&pkg, free).unwrap();
    assert_eq!(codes(&pkg), vec![]);
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 6] ^= 1;
    fs::write(&pkg, bad_crc).unwrap();
    assert_eq!(codes(&pkg), vec![ARCHIVE_MALFORMED]);
}

#[test]
fn limits_count_what_the_ok_line_counts() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let entries = payload(plugin(Variant::Good));
    let m = manifest_of(&entries);
    let mut r = Raw::new();
    r.file(b".aapi/manifest.json", 0o644, &m.to_bytes());
    r.file(b".aapi/manifest.sig", 0o644, &key.sign(&m.to_bytes(), &m));
    r.entry(&E::Dir(".aapi", 0o755));
    for e in &entries {
        r.entry(e);
    }
    let bytes = r.finish();
    let (n, size) = (m.files.len(), m.payload_bytes());
    let plain = dir.path().join("demo.aapkg");
    fs::write(&plain, &bytes).unwrap();
    let gz = dir.path().join("demo.aapkg.gz");
    fs::write(&gz, gzip(&bytes)).unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    tar::Archive::new(&bytes[..]).unpack(&tree).unwrap();
    for subject in [&plain, &gz, &tree] {
        let o = run(&[&"verify", subject]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        assert!(
            stdout(&o).contains(&format!(": {n} entries, {size} bytes;")),
            "{}",
            stdout(&o)
        );
        // The numbers the OK line prints are within limits of those numbers.
        let (n_, size_) = (n.to_string(), size.to_string());
        let o = run(&[
            &"verify",
            subject,
            &"--max-entries",
            &n_,
            &"--max-total-size",
            &size_,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let (less_n, less_size) = ((n - 1).to_string(), (size - 1).to_string());
        for (flag, value, code) in [
            ("--max-entries", &less_n, "LIMIT_ENTRIES"),
            ("--max-total-size", &less_size, "LIMIT_TOTAL_SIZE"),
        ] {
            let o = run(&[&"verify", subject, &flag, value]);
            assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
            assert!(stdout(&o).starts_with(code), "{}", stdout(&o));
        }
    }
}

#[test]
fn the_file_size_limit_counts_payload_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let entries = payload(plugin(Variant::Good));
    let mut m = manifest_of(&entries);
    m.plugin.workload_types = (0..4000).map(|i| format!("workload-type-{i:06}")).collect();
    let largest = entries
        .iter()
        .filter_map(|e| match e {
            E::File(_, _, d) => Some(d.len()),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(
        m.to_bytes().len() > largest,
        "the manifest is the largest file"
    );
    let bytes = Raw::package(&m, &entries).finish();
    let plain = dir.path().join("demo.aapkg");
    fs::write(&plain, &bytes).unwrap();
    let gz = dir.path().join("demo.aapkg.gz");
    fs::write(&gz, gzip(&bytes)).unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    tar::Archive::new(&bytes[..]).unpack(&tree).unwrap();
    let (fits, less) = (largest.to_string(), (largest - 1).to_string());
    for subject in [&plain, &gz, &tree] {
        let o = run(&[&"verify", subject, &"--max-file-size", &fits]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let o = run(&[&"verify", subject, &"--max-file-size", &less]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stdout(&o).starts_with(&format!("LIMIT_FILE_SIZE         {ENTRY}: ")),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn a_usage_error_with_json_prints_the_error_object() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("good.aapkg");
    fs::write(&pkg, good_package()).unwrap();
    let dest = dir.path().join("demo");
    let p = pkg.display().to_string();
    for (args, error) in [
        (
            vec!["verify", &p, "--json", "--target-arch", "sparc"],
            "invalid value 'sparc' for '--target-arch <TARGET_ARCH>'",
        ),
        (
            vec!["verify", "--max-entries", "10", "--json", &p, "--bogus"],
            "unexpected argument '--bogus' found",
        ),
        (
            vec![
                "install",
                &p,
                "--dest",
                dest.to_str().unwrap(),
                "--json",
                "--max-entries",
                "ten",
            ],
            "invalid value 'ten' for '--max-entries <MAX_ENTRIES>'",
        ),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout(&o)));
        assert!(v["valid"].is_null(), "{v}");
        assert!(v["error"].as_str().unwrap().starts_with(error), "{v}");
        assert!(!v["error"].as_str().unwrap().contains('\n'), "{v}");
        assert_eq!(v["subject"], p.as_str());
        for key in ["manifest", "manifest_sha256", "signature"] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
        assert_eq!(v["findings"], serde_json::json!([]));
        if args[0] == "install" {
            assert_eq!(v["installed"], false);
            assert!(v["replaced"].is_null());
            assert_eq!(v["leftovers"], serde_json::json!([]));
        }
        // Standard error has the usual message.
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with(&format!("error: {error}")),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(!dest.exists());
    // Without --json, nothing on standard output; help is not an error.
    let o = run(&[&"verify", &pkg, &"--target-arch", &"sparc"]);
    assert_eq!((o.status.code(), o.stdout.len()), (Some(2), 0));
    let o = run(&[&"verify", &"--json", &"--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Usage"), "{}", stdout(&o));
}

/// The signature does not cover the tar header's mode: a manifest or signature that not everyone
/// may read (a non-root unpacker could not verify what they unpacked) is a finding.
#[test]
fn a_manifest_or_signature_not_readable_by_everyone_is_a_finding() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let entries = payload(plugin(Variant::Good));
    let m = manifest_of(&entries);
    for (manifest_mode, sig_mode) in [(0o600, 0o644), (0o644, 0o000), (0o444, 0o444)] {
        let mut r = Raw::new();
        r.file(b".aapi/manifest.json", manifest_mode, &m.to_bytes());
        r.file(
            b".aapi/manifest.sig",
            sig_mode,
            &key.sign(&m.to_bytes(), &m),
        );
        for e in &entries {
            r.entry(e);
        }
        let pkg = dir.path().join("demo.aapkg");
        fs::write(&pkg, r.finish()).unwrap();
        let want = if manifest_mode & sig_mode & 0o444 == 0o444 {
            vec![]
        } else {
            vec![FILE_MODE]
        };
        assert_eq!(codes(&pkg), want, "{manifest_mode:o} {sig_mode:o}");
    }
}
