//! Packing: what goes into a package, what pack refuses, signing, and the CLI's own lists.

mod common;

use aapi_validator::Code::{self, *};
use aapi_validator::manifest::{Kind, Manifest};
use common::*;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn manifest_in(pkg: &Path) -> (Manifest, Vec<String>) {
    let mut ar = tar::Archive::new(fs::File::open(pkg).unwrap());
    let mut names = Vec::new();
    let mut manifest = None;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if name == ".aapi/manifest.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            manifest = Some(Manifest::parse(&b).unwrap());
        }
        names.push(name);
    }
    (manifest.unwrap(), names)
}

#[test]
fn pack_writes_a_reproducible_package_that_verifies() {
    let d = plugin_dir(Variant::Good);
    // Group-writable modes from a permissive umask are normalised.
    fs::set_permissions(d.path().join("lib"), fs::Permissions::from_mode(0o775)).unwrap();
    fs::set_permissions(d.path().join("README"), fs::Permissions::from_mode(0o664)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (out.path().join("a.aapkg"), out.path().join("b.aapkg"));
    let o = run(&[&"pack", &d.path(), &"-o", &a]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("packed demo 1.0.0 (Example Corp.), ABI 1.0, x86_64-linux"),
        "{}",
        stdout(&o)
    );
    assert_eq!(run(&[&"pack", &d.path(), &"-o", &b]).status.code(), Some(0));
    assert_eq!(
        fs::read(&a).unwrap(),
        fs::read(&b).unwrap(),
        "same files, same bytes"
    );
    assert_eq!(run(&[&"verify", &a]).status.code(), Some(0));

    let (m, names) = manifest_in(&a);
    assert_eq!(
        names,
        [
            ".aapi/manifest.json",
            ".aapi/",
            "README",
            "aapi-plugin.json",
            "lib/",
            "lib/libdemo.so",
            "lib/libdemo.so.1"
        ]
    );
    assert_eq!(m.entry, ENTRY);
    assert_eq!((m.abi.major, m.abi.minor), (1, 0));
    assert_eq!(
        (m.target.arch.as_str(), m.target.os.as_str()),
        ("x86_64", "linux")
    );
    assert_eq!(m.plugin.workload_types, ["files"]);
    let mode = |p: &str| m.get(p).unwrap().kind.mode().unwrap();
    assert_eq!(
        (mode("lib"), mode("README"), mode(ENTRY)),
        (0o755, 0o644, 0o755)
    );
    let Kind::File { size, sha256, .. } = &m.get(ENTRY).unwrap().kind else {
        panic!()
    };
    let lib = plugin(Variant::Good);
    assert_eq!(*size, lib.len() as u64);
    assert_eq!(*sha256, aapi_validator::hash::bytes(&lib));
    assert_eq!(
        m.get("lib/libdemo.so.1").unwrap().kind,
        Kind::Symlink {
            target: "libdemo.so".into()
        }
    );

    // The unpacked package (as tar -x leaves it) verifies as a directory too.
    let unpacked = out.path().join("unpacked");
    tar::Archive::new(fs::File::open(&a).unwrap())
        .unpack(&unpacked)
        .unwrap();
    fs::set_permissions(&unpacked, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(codes(&unpacked), vec![]);
    fs::write(unpacked.join("lib/libdemo.so"), b"\x7fELF tampered").unwrap();
    let mut found = codes(&unpacked);
    found.sort();
    assert_eq!(found, [FILE_SIZE, FILE_DIGEST, ELF_INVALID]);
}

#[test]
fn metadata_comes_from_the_file_and_flags_win() {
    let d = plugin_dir(Variant::Good);
    let out = tempfile::tempdir().unwrap();
    let pkg = out.path().join("p.aapkg");
    let o = run(&[
        &"pack",
        &d.path(),
        &"-o",
        &pkg,
        &"--name",
        &"demo-pro",
        &"--vendor",
        &"Other Vendor",
        &"--workload-type",
        &"hadoop",
        &"--workload-type",
        &"files",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let (m, _) = manifest_in(&pkg);
    assert_eq!(m.plugin.name, "demo-pro");
    assert_eq!(m.plugin.version, "1.0.0", "from aapi-plugin.json");
    assert_eq!(m.plugin.vendor, "Other Vendor");
    assert_eq!(m.plugin.workload_types, ["hadoop", "files"]);

    fs::remove_file(d.path().join("aapi-plugin.json")).unwrap();
    let o = run(&[
        &"pack",
        &d.path(),
        &"-o",
        &pkg,
        &"--name",
        &"x",
        &"--plugin-version",
        &"1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("vendor"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let meta = out.path().join("meta.json");
    fs::write(
        &meta,
        r#"{"name": "n", "version": "2", "vendor": "V", "workload_types": ["files"]}"#,
    )
    .unwrap();
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg, &"--metadata", &meta])
            .status
            .code(),
        Some(0)
    );
    fs::write(
        &meta,
        r#"{"name": "../../n", "version": "2", "vendor": "V", "workload_types": ["files"]}"#,
    )
    .unwrap();
    let o = run(&[&"pack", &d.path(), &"-o", &pkg, &"--metadata", &meta]);
    assert_eq!(o.status.code(), Some(2), "a name that is not a name");
    fs::write(&meta, r#"{"name": "n", "surprise": 1}"#).unwrap();
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg, &"--metadata", &meta])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn the_entry_library_is_found_or_named() {
    let d = plugin_dir(Variant::Good);
    let out = tempfile::tempdir().unwrap();
    let pkg = out.path().join("p.aapkg");
    fs::copy(d.path().join(ENTRY), d.path().join("lib/libother.so")).unwrap();
    let o = run(&[&"pack", &d.path(), &"-o", &pkg]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--entry"));
    assert!(!pkg.exists());
    assert_eq!(
        run(&[
            &"pack",
            &d.path(),
            &"-o",
            &pkg,
            &"--entry",
            &"lib/libother.so"
        ])
        .status
        .code(),
        Some(0)
    );
    assert_eq!(manifest_in(&pkg).0.entry, "lib/libother.so");
    let o = run(&[&"pack", &d.path(), &"-o", &pkg, &"--entry", &"README"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a README is no library: {}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("ELF_INVALID"));
}

#[test]
fn pack_refuses_what_verify_would_refuse() {
    let out = tempfile::tempdir().unwrap();
    let pkg = out.path().join("p.aapkg");
    type Make = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Make, Code)> = vec![
        (
            "fifo",
            Box::new(|d: &Path| {
                let p = std::ffi::CString::new(d.join("pipe").to_str().unwrap()).unwrap();
                // SAFETY: p is a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o644) }, 0);
            }),
            SPECIAL_FILE,
        ),
        (
            "setuid",
            Box::new(|d: &Path| {
                fs::write(d.join("helper"), "#!/bin/sh\n").unwrap();
                fs::set_permissions(d.join("helper"), fs::Permissions::from_mode(0o4755)).unwrap();
            }),
            MODE_SETID,
        ),
        (
            "escape",
            Box::new(|d: &Path| {
                std::os::unix::fs::symlink("../../etc/passwd", d.join("passwd")).unwrap()
            }),
            SYMLINK_ESCAPE,
        ),
        (
            "newline",
            Box::new(|d: &Path| fs::write(d.join("a\nb"), "x").unwrap()),
            PATH_INVALID,
        ),
        (
            "missing-symbol",
            Box::new(|d: &Path| fs::write(d.join(ENTRY), plugin(Variant::MissingSymbol)).unwrap()),
            ELF_SYMBOL_MISSING,
        ),
        (
            "wrong-abi",
            Box::new(|d: &Path| fs::write(d.join(ENTRY), plugin(Variant::WrongAbi)).unwrap()),
            ABI_INCOMPATIBLE,
        ),
    ];
    for (name, make, code) in cases {
        let d = plugin_dir(Variant::Good);
        make(d.path());
        let o = run(&[&"pack", &d.path(), &"-o", &pkg]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stdout(&o));
        assert!(stdout(&o).contains(code.as_str()), "{name}: {}", stdout(&o));
        assert!(
            stdout(&o).lines().last().unwrap().starts_with("REFUSED"),
            "{name}"
        );
        assert!(!pkg.exists(), "{name}: no package written");
        assert_eq!(
            names_in(out.path()),
            Vec::<String>::new(),
            "{name}: no temporary file left"
        );
    }
    let d = plugin_dir(Variant::Good);
    let inside = d.path().join("lib/p.aapkg");
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &inside]).status.code(),
        Some(2)
    );
    assert!(!inside.exists());
    fs::create_dir(d.path().join(".aapi")).unwrap();
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg]).status.code(),
        Some(2)
    );
}

#[test]
fn symlink_targets_are_packed_as_they_are() {
    let d = plugin_dir(Variant::Good);
    let long = format!("{}README", "./".repeat(60));
    let targets = [
        ("lib-dot", "lib/."),
        ("lib-twice", "lib//libdemo.so"),
        ("lib-slash", "lib/"),
        ("long", long.as_str()),
    ];
    for (link, target) in targets {
        std::os::unix::fs::symlink(target, d.path().join(link)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let pkg = out.path().join("p.aapkg");
    let o = run(&[&"pack", &d.path(), &"-o", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(run(&[&"verify", &pkg]).status.code(), Some(0));
    let (m, _) = manifest_in(&pkg);
    let mut ar = tar::Archive::new(fs::File::open(&pkg).unwrap());
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        if let Some((_, target)) = targets.iter().find(|(l, _)| *l == name) {
            assert_eq!(e.link_name_bytes().unwrap().as_ref(), target.as_bytes());
            assert_eq!(
                m.get(&name).unwrap().kind,
                Kind::Symlink {
                    target: target.to_string()
                }
            );
        }
    }
    // A file followed by / is no directory: the link would not work.
    let d = plugin_dir(Variant::Good);
    std::os::unix::fs::symlink("libdemo.so/", d.path().join("lib/libdemo.so.2")).unwrap();
    let o = run(&[&"pack", &d.path(), &"-o", &pkg]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("SYMLINK_DANGLING        lib/libdemo.so.2: "),
        "{}",
        stdout(&o)
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn keygen_sign_and_verify_with_keys() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let base = w.path().join("release");
    let o = run(&[&"keygen", &"-o", &base]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        run(&[&"keygen", &"-o", &base]).status.code(),
        Some(2),
        "never overwrites keys"
    );
    // A directory is no base name: no hidden `.key` in it.
    let o = run(&[&"keygen", &"-o", &format!("{}/", w.path().display())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is a directory; give a base name in it"),
        "{}",
        stderr(&o)
    );
    assert!(!w.path().join(".key").exists());
    let o = run(&[&"verify", &w.path(), &"--key", &w.path()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("name the file in it"), "{}", stderr(&o));
    let (sec, public) = (w.path().join("release.key"), w.path().join("release.pub"));
    assert_eq!(
        fs::metadata(&sec).unwrap().permissions().mode() & 0o777,
        0o600
    );
    run(&[&"keygen", &"-o", &w.path().join("other")]);
    let other = w.path().join("other.pub");

    // Signed while packing, compressed.
    let gz = w.path().join("demo.aapkg.gz");
    let o = run(&[&"pack", &d.path(), &"-o", &gz, &"--gzip", &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(&fs::read(&gz).unwrap()[..2], b"\x1f\x8b");
    let o = run(&[&"verify", &gz, &"--key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("signature verified"), "{}", stdout(&o));
    let o = run(&[&"verify", &gz, &"--key", &other, &"--key", &public]);
    assert_eq!(o.status.code(), Some(0), "any trusted key will do");
    assert_eq!(
        run(&[&"verify", &gz, &"--key", &other]).status.code(),
        Some(1)
    );

    // Signed afterwards, in place; the payload is untouched.
    let pkg = w.path().join("demo.aapkg");
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg]).status.code(),
        Some(0)
    );
    let unsigned = manifest_in(&pkg).0;
    assert_eq!(
        run(&[&"verify", &pkg, &"--key", &public]).status.code(),
        Some(1)
    );
    let o = run(&[&"sign", &pkg, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        run(&[&"verify", &pkg, &"--key", &public]).status.code(),
        Some(0)
    );
    let (signed, names) = manifest_in(&pkg);
    assert_eq!(signed, unsigned);
    assert_eq!(&names[..2], [".aapi/manifest.json", ".aapi/manifest.sig"]);
    // Verifying without a key still reports the signature, unchecked.
    assert!(stdout(&run(&[&"verify", &pkg])).contains("not checked"));

    // Installing with a key needs the signature; the installed tree keeps it.
    let dest = w.path().join("demo");
    assert_eq!(
        run(&[&"install", &pkg, &"--dest", &dest, &"--key", &public])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&[&"verify", &"--installed", &dest, &"--key", &public])
            .status
            .code(),
        Some(0)
    );

    // A package whose signature is malformed, or not where it belongs, does not verify, and
    // signing it replaces that signature.
    let entries = payload(plugin(Variant::Good));
    let m = manifest_of(&entries);
    for (name, sig_first) in [("garbage-sig", true), ("late-sig", false)] {
        let mut r = Raw::new();
        r.file(b".aapi/manifest.json", 0o644, &m.to_bytes());
        if sig_first {
            r.file(b".aapi/manifest.sig", 0o644, b"{}");
        }
        for e in &entries {
            r.entry(e);
        }
        if !sig_first {
            let k = aapi_validator::sign::SecretKey::load(&sec).unwrap();
            r.file(b".aapi/manifest.sig", 0o644, &k.sign(&m.to_bytes(), &m));
        }
        let p = w.path().join(format!("{name}.aapkg"));
        fs::write(&p, r.finish()).unwrap();
        assert_eq!(run(&[&"verify", &p]).status.code(), Some(1), "{name}");
        let o = run(&[&"sign", &p, &"--key", &sec]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stdout(&o));
        let o = run(&[&"verify", &p, &"--key", &public]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stdout(&o));
    }

    // An invalid package is not signed.
    let bad = w.path().join("bad.aapkg");
    fs::write(&bad, honest_with_extra()).unwrap();
    let before = fs::read(&bad).unwrap();
    let o = run(&[&"sign", &bad, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(fs::read(&bad).unwrap(), before);
}

#[test]
fn a_key_file_whose_key_id_is_wrong_or_that_holds_two_keys_is_refused() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let (base, other) = (w.path().join("release"), w.path().join("other"));
    assert_eq!(run(&[&"keygen", &"-o", &base]).status.code(), Some(0));
    assert_eq!(run(&[&"keygen", &"-o", &other]).status.code(), Some(0));
    let pkg = w.path().join("demo.aapkg");
    let sec = w.path().join("release.key");
    let o = run(&[&"pack", &d.path(), &"-o", &pkg, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let public = fs::read_to_string(w.path().join("release.pub")).unwrap();
    let secret = fs::read_to_string(&sec).unwrap();
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .to_string()
    };
    let id = field(&public, "key-id");
    let other_key = field(
        &fs::read_to_string(w.path().join("other.pub")).unwrap(),
        "key",
    );

    // A key-id line that names another key: the file was edited or damaged.
    let wrong_id = w.path().join("wrong-id.pub");
    fs::write(&wrong_id, public.replace(&id, "ffffffffffffffff")).unwrap();
    let want = format!(
        "--key {}: its key-id line says ffffffffffffffff, but the key it holds has id {id} (the file is damaged or was edited); copy it again from where `aapi-validator keygen` wrote it",
        wrong_id.display()
    );
    fails(&[&"verify", &pkg, &"--key", &wrong_id], &want);
    let dest = w.path().join("demo");
    fails(
        &[&"install", &pkg, &"--dest", &dest, &"--key", &wrong_id],
        &want,
    );
    assert!(!dest.exists());
    // The same for a secret key: nothing is signed with it.
    let wrong_sec = w.path().join("wrong-id.key");
    fs::write(&wrong_sec, secret.replace(&id, "0000000000000000")).unwrap();
    fails(
        &[
            &"sign",
            &pkg,
            &"--key",
            &wrong_sec,
            &"-o",
            &w.path().join("x.aapkg"),
        ],
        &format!(
            "--key {}: its key-id line says 0000000000000000, but the key it holds has id {id} (the file is damaged or was edited); copy it again from where `aapi-validator keygen` wrote it",
            wrong_sec.display()
        ),
    );
    assert!(!w.path().join("x.aapkg").exists());

    // Two key lines, whichever comes last: which one is meant is not guessed.
    for (name, text) in [
        ("two-keys.pub", format!("{public}key: {other_key}\n")),
        (
            "two-keys-first.pub",
            public.replacen("key: ", &format!("key: {other_key}\nkey: "), 1),
        ),
        ("two-ids.pub", format!("{public}key-id: {id}\n")),
    ] {
        let path = w.path().join(name);
        fs::write(&path, &text).unwrap();
        let line = if name == "two-ids.pub" {
            "key-id"
        } else {
            "key"
        };
        fails(
            &[&"verify", &pkg, &"--key", &path],
            &format!(
                "--key {} has more than one `{line}:` line, so which key is meant is not known (the file is damaged or was edited); copy BASE.pub again from where it was made",
                path.display()
            ),
        );
    }
    let two_seeds = w.path().join("two-seeds.key");
    fs::write(&two_seeds, format!("{secret}seed: {}\n", "00".repeat(32))).unwrap();
    fails(
        &[&"sign", &pkg, &"--key", &two_seeds],
        &format!(
            "--key {} has more than one `seed:` line, so which key is meant is not known (the file is damaged or was edited); copy BASE.key again from where it was made",
            two_seeds.display()
        ),
    );

    // The files keygen wrote, and a public key file without a key-id line, still work.
    let o = run(&[&"verify", &pkg, &"--key", &w.path().join("release.pub")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let no_id = w.path().join("no-id.pub");
    fs::write(&no_id, public.replace(&format!("key-id: {id}\n"), "")).unwrap();
    let o = run(&[&"verify", &pkg, &"--key", &no_id]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

fn honest_with_extra() -> Vec<u8> {
    let entries = payload(plugin(Variant::Good));
    let mut r = Raw::package(&manifest_of(&entries), &entries);
    r.file(b"extra", 0o644, b"x");
    r.finish()
}

#[test]
fn every_code_is_documented_and_listed() {
    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/validator.md")).unwrap();
    let listed = stdout(&run(&[&"codes"]));
    for c in Code::ALL {
        assert!(
            doc.contains(&format!("`{}`", c.as_str())),
            "{c} is not in docs/validator.md"
        );
        assert!(listed.contains(c.as_str()), "{c} is not listed by `codes`");
    }
    assert_eq!(listed.lines().count(), Code::ALL.len());
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run `args`; it must fail to run (exit 2) with exactly `want` on standard error.
fn fails(args: &[&dyn AsRef<std::ffi::OsStr>], want: &str) {
    let o = run(args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o), format!("aapi-validator: {want}\n"));
}

#[test]
fn a_wrong_output_or_missing_input_is_named_with_what_to_do() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let base = w.path().join("release");
    assert_eq!(run(&[&"keygen", &"-o", &base]).status.code(), Some(0));
    let key = w.path().join("release.key");
    let pkg = w.path().join("demo.aapkg");
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg]).status.code(),
        Some(0)
    );
    let before = snapshot(w.path());

    // An output directory that does not exist, or is a file.
    let missing = w.path().join("dist");
    let out = missing.join("demo.aapkg");
    let want = format!(
        "{m}, the directory of {o}, does not exist; create it (`mkdir -p {m}`) or choose another -o",
        m = missing.display(),
        o = out.display()
    );
    fails(&[&"pack", &d.path(), &"-o", &out], &want);
    fails(&[&"sign", &pkg, &"--key", &key, &"-o", &out], &want);
    let want = want.replace("demo.aapkg", "release.key");
    fails(&[&"keygen", &"-o", &missing.join("release")], &want);
    let out = pkg.join("demo.aapkg");
    fails(
        &[&"pack", &d.path(), &"-o", &out],
        &format!(
            "{p}, the directory of {o}, is not a directory; choose another -o",
            p = pkg.display(),
            o = out.display()
        ),
    );
    // An output that is a directory.
    fails(
        &[&"pack", &d.path(), &"-o", &w.path()],
        &format!(
            "-o {p} is a directory; give the path of the file to write, such as {p}/NAME-VERSION.aapkg",
            p = w.path().display()
        ),
    );
    // Keys are never replaced.
    fails(
        &[&"keygen", &"-o", &base],
        &format!(
            "{} exists already, and keygen never replaces a key; nothing was written: choose another -o, or move it away first",
            key.display()
        ),
    );

    // A metadata file that is missing or is not metadata.
    let meta = w.path().join("meta.json");
    let out = w.path().join("other.aapkg");
    fails(
        &[&"pack", &d.path(), &"-o", &out, &"--metadata", &meta],
        &format!(
            "cannot read {}: No such file or directory (os error 2); check the path",
            meta.display()
        ),
    );
    fs::write(&meta, r#"{"nam": "demo"}"#).unwrap();
    let o = run(&[&"pack", &d.path(), &"-o", &out, &"--metadata", &meta]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "aapi-validator: {} is not plugin metadata: unknown field `nam`",
            meta.display()
        )) && e.ends_with(
            "; fix it: a JSON object with some of the fields name, version, vendor, workload_types (a list) and entry\n"
        ),
        "{e}"
    );
    fs::remove_file(&meta).unwrap();
    assert!(snapshot(w.path()) == before, "nothing was written");
}

#[test]
fn pack_sign_and_keygen_tell_a_user_without_permission_what_to_do() {
    let w = tempfile::tempdir().unwrap();
    let Some(bin) = unprivileged_bin(w.path()) else {
        return;
    };
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| run_unprivileged(&bin, args).unwrap();
    let fails = |args: &[&dyn AsRef<std::ffi::OsStr>], want: &str| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(stderr(&o), format!("aapi-validator: {want}\n"));
    };
    let denied = "Permission denied (os error 13)";
    let d = plugin_dir(Variant::Good);
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let pkg = w.path().join("demo.aapkg");
    assert_eq!(
        common::run(&[&"pack", &d.path(), &"-o", &pkg])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        common::run(&[&"keygen", &"-o", &w.path().join("release")])
            .status
            .code(),
        Some(0)
    );
    let key = w.path().join("release.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    // An output directory the user may not write to, holding a package.
    let ro = w.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let kept = ro.join("demo.aapkg");
    fs::copy(&pkg, &kept).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let before = snapshot(w.path());
    let r = ro.display();

    let out = ro.join("new.aapkg");
    fails(
        &[&"pack", &d.path(), &"-o", &out],
        &format!(
            "cannot write the package {}: {denied}; nothing was written: run `pack` as a user who may write to {r}, or choose another -o",
            out.display()
        ),
    );
    fails(
        &[&"sign", &pkg, &"--key", &key, &"-o", &out],
        &format!(
            "cannot write the signed package {}: {denied}; nothing was written: run `sign` as a user who may write to {r}, or choose another -o",
            out.display()
        ),
    );
    // Signed in place: the package is as it was.
    fails(
        &[&"sign", &kept, &"--key", &key],
        &format!(
            "cannot write the signed package {k}: {denied}; nothing was written and {k} is as it was: run `sign` as a user who may write to {r}, or choose another -o",
            k = kept.display()
        ),
    );
    fails(
        &[&"keygen", &"-o", &ro.join("release")],
        &format!(
            "cannot write the secret key {r}/release.key: {denied}; nothing was written: run `keygen` as a user who may write to {r}, or choose another -o"
        ),
    );
    // A directory the user may list but not enter: the advice names it.
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o644)).unwrap();
    let sub = ro.join("sub");
    let o = run(&[&"pack", &d.path(), &"-o", &sub.join("new.aapkg")]);
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        format!(
            "aapi-validator: cannot reach the directory of {s}/new.aapkg, {s}: {denied}; nothing was written: run `pack` as a user who may write to {r}, or choose another -o\n",
            s = sub.display()
        )
    );

    // Plugin files, a plugin directory and a metadata file the user may not read; the output
    // directory is open to everyone, and nothing is left in it.
    let open = w.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let out = open.join("demo.aapkg");
    let dir = d.path().to_path_buf();
    let meta = w.path().join("meta.json");
    fs::write(&meta, r#"{"name": "demo"}"#).unwrap();
    fs::set_permissions(&meta, fs::Permissions::from_mode(0o600)).unwrap();
    for (path, mode, extra) in [
        (d.path().join("README"), 0o644, None),
        (d.path().join(ENTRY), 0o755, None),
        (d.path().join("lib"), 0o755, None),
        (meta.clone(), 0o600, Some(&meta)),
    ] {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"pack", &dir, &"-o", &out];
        if let Some(m) = &extra {
            args.extend([&"--metadata" as &dyn AsRef<std::ffi::OsStr>, m]);
        }
        let o = run(&args);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert_eq!(
            stderr(&o),
            format!(
                "aapi-validator: cannot read {}: {denied}; run as a user who may read it\n",
                path.display()
            )
        );
        assert!(names_in(&open).is_empty(), "nothing was written");
    }
    fs::remove_dir(&open).unwrap();
    fs::remove_file(&meta).unwrap();
    assert!(snapshot(w.path()) == before, "nothing was changed");
}

#[test]
fn a_full_or_read_only_file_system_is_told_and_nothing_is_left_on_it() {
    let d = plugin_dir(Variant::Good);
    // 3 MiB that do not fit on the 1 MiB file system below.
    fs::write(d.path().join("data.bin"), vec![0x5a; 3 << 20]).unwrap();
    let small = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let key = w.path().join("release.key");
    assert_eq!(
        run(&[&"keygen", &"-o", &w.path().join("release")])
            .status
            .code(),
        Some(0)
    );
    let full = w.path().join("full");
    fs::create_dir(&full).unwrap();
    let (pkg, big) = (full.join("demo.aapkg"), full.join("big.aapkg"));
    let f = full.display();
    let free_space =
        |cmd: &str| format!("free space on the file system of {f}, then run `{cmd}` again");
    let enospc = "No space left on device (os error 28)";
    let ran = with_tmpfs(&full, "size=1m", || {
        assert_eq!(
            run(&[&"pack", &small.path(), &"-o", &pkg]).status.code(),
            Some(0)
        );
        let package = fs::read(&pkg).unwrap();

        fails(
            &[&"pack", &d.path(), &"-o", &big],
            &format!(
                "cannot write the package {}: {enospc}; nothing was written: {}",
                big.display(),
                free_space("pack")
            ),
        );
        assert_eq!(names_in(&full), ["demo.aapkg"], "no temporary file is left");

        // Full to the last byte: signing in place cannot write, keygen cannot write its key.
        let filler = full.join("filler");
        assert!(fs::write(&filler, vec![0u8; 1 << 20]).is_err());
        fails(
            &[&"sign", &pkg, &"--key", &key],
            &format!(
                "cannot write the signed package {p}: {enospc}; nothing was written and {p} is as it was: {}",
                free_space("sign"),
                p = pkg.display()
            ),
        );
        assert_eq!(fs::read(&pkg).unwrap(), package);
        fails(
            &[&"keygen", &"-o", &full.join("release")],
            &format!(
                "cannot write the secret key {f}/release.key: {enospc}; nothing was written: {}",
                free_space("keygen")
            ),
        );
        let mut names = names_in(&full);
        names.sort();
        assert_eq!(names, ["demo.aapkg", "filler"], "the key made is removed");
        fs::remove_file(&filler).unwrap();

        // No inode left: the temporary file cannot be made.
        let options = format!("size=1m,nr_inodes={}", inodes_used(&full));
        mount(&full, None, libc::MS_REMOUNT, &options).unwrap();
        fails(
            &[&"pack", &small.path(), &"-o", &big],
            &format!(
                "cannot write the package {}: {enospc}; nothing was written: {}",
                big.display(),
                free_space("pack")
            ),
        );

        // A read-only file system.
        mount(&full, None, libc::MS_REMOUNT | libc::MS_RDONLY, "").unwrap();
        fails(
            &[&"sign", &pkg, &"--key", &key],
            &format!(
                "cannot write the signed package {p}: Read-only file system (os error 30); nothing was written and {p} is as it was: {f} is on a read-only file system: remount it read-write or choose another -o",
                p = pkg.display()
            ),
        );
        assert_eq!(fs::read(&pkg).unwrap(), package);
        assert_eq!(names_in(&full), ["demo.aapkg"]);
    });
    if let Err(why) = ran {
        eprintln!("skipped: {why}");
    }
}

/// Run the validator binary with the umask `mask`.
fn run_with_umask(
    mask: libc::mode_t,
    args: &[&dyn AsRef<std::ffi::OsStr>],
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aapi-validator"));
    cmd.args(args.iter().map(|a| a.as_ref()));
    // SAFETY: umask is async-signal-safe and cannot fail.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn a_package_keeps_the_mode_of_the_file_it_replaces_or_follows_the_umask() {
    use std::os::unix::fs::MetadataExt;
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let key = w.path().join("release");
    assert_eq!(run(&[&"keygen", &"-o", &key]).status.code(), Some(0));
    let sec = w.path().join("release.key");
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;

    // A new file: 0666 less the umask.
    let pkg = w.path().join("demo.aapkg");
    let o = run_with_umask(0o077, &[&"pack", &d.path(), &"-o", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(mode(&pkg), 0o600);
    let signed = w.path().join("signed.aapkg");
    let o = run_with_umask(0o027, &[&"sign", &pkg, &"--key", &sec, &"-o", &signed]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(mode(&signed), 0o640);

    // A file replaced in place, or by pack, keeps its mode (and, for root, its owner).
    fs::set_permissions(&pkg, fs::Permissions::from_mode(0o604)).unwrap();
    if is_root() {
        std::os::unix::fs::chown(&pkg, Some(1234), Some(2345)).unwrap();
    }
    let o = run_with_umask(0o022, &[&"sign", &pkg, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(mode(&pkg), 0o604);
    if is_root() {
        let m = fs::metadata(&pkg).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 2345));
    }
    let o = run_with_umask(0o000, &[&"pack", &d.path(), &"-o", &pkg]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(mode(&pkg), 0o604);
}

/// A package named through a symbolic link (a release layout's `current.aapkg`) is written where
/// the link points: the link stays, and the package it names is the one signed or packed.
#[test]
fn pack_and_sign_through_a_link_write_the_package_it_names() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let base = w.path().join("release");
    assert_eq!(run(&[&"keygen", &"-o", &base]).status.code(), Some(0));
    let (sec, public) = (w.path().join("release.key"), w.path().join("release.pub"));
    fs::create_dir(w.path().join("releases")).unwrap();
    let real = w.path().join("releases/demo-1.0.aapkg");
    let link = w.path().join("current.aapkg");
    std::os::unix::fs::symlink("releases/demo-1.0.aapkg", &link).unwrap();
    // Packed through a link whose package does not exist yet, then signed through it.
    let o = run(&[&"pack", &d.path(), &"-o", &link]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&[&"sign", &link, &"--key", &sec]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let o = run(&[&"verify", &real, &"--key", &public]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("signature verified"), "{}", stdout(&o));
}

/// Results that cannot be written (a full disk) fail the command instead of vanishing.
#[test]
fn results_that_cannot_be_written_fail_the_command() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("demo.aapkg");
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg]).status.code(),
        Some(0)
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_aapi-validator"))
        .args(["verify", "--json"])
        .arg(&pkg)
        .stdout(fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot write the results"),
        "{}",
        stderr(&o)
    );
}

/// A package unpacked with `tar -xf` under umask 002 (ordinary users' default on many systems)
/// verifies as a tree: `.aapi` has the mode its entry gives, and the directory unpacked into is
/// the unpacker's own (its mode counts only for `--installed`).
#[test]
fn a_package_unpacked_under_umask_002_verifies() {
    let d = plugin_dir(Variant::Good);
    let w = tempfile::tempdir().unwrap();
    let pkg = w.path().join("demo.aapkg");
    assert_eq!(
        run(&[&"pack", &d.path(), &"-o", &pkg]).status.code(),
        Some(0)
    );
    let x = w.path().join("x");
    let unpacked = std::process::Command::new("sh")
        .args([
            "-c",
            "umask 002 && mkdir \"$1\" && tar -xf \"$2\" -C \"$1\"",
            "sh",
        ])
        .arg(&x)
        .arg(&pkg)
        .status()
        .unwrap();
    assert!(unpacked.success());
    assert_eq!(
        fs::metadata(x.join(".aapi")).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let o = run(&[&"verify", &x]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
