//! Ed25519 keys and manifest signatures (ed25519-dalek).
//!
//! A signature signs a *statement*: a few lines naming the manifest's SHA-256 and the trusted
//! metadata (plugin name, version, vendor, ABI, target). The manifest lists every file's
//! SHA-256, so the signature covers every byte of the payload.

use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::hash;
use crate::manifest::{Manifest, hex, unhex};
use crate::output::{self, Cmd};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const SECRET_HEADER: &str = "aapi-validator secret key";
const PUBLIC_HEADER: &str = "aapi-validator public key";
const SIGNATURE_FORMAT: &str = "aapi-manifest-signature";
const STATEMENT_HEADER: &str = "aapi-manifest-signature v1";

/// A public key trusted to sign packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// A secret signing key.
pub struct SecretKey {
    key: SigningKey,
}

/// The short id of a public key: the first 8 bytes of its SHA-256, in hex.
fn key_id(key: &VerifyingKey) -> String {
    hex(&hash::bytes(key.as_bytes())[..8])
}

impl PublicKey {
    /// The key's id.
    pub fn id(&self) -> String {
        key_id(&self.key)
    }

    /// Read a public key file. A file that states its key id (`key-id:`, as keygen writes it)
    /// must state this key's id, and a field may appear once.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_key(path)?;
        let file = parse_key_file(&text, PUBLIC_HEADER, "key").map_err(|e| {
            key_file_error(path, e, "BASE.pub", || {
                if text.starts_with(SECRET_HEADER) {
                    "is a secret key, not a public key"
                } else {
                    "is not an aapi-validator public key file"
                }
            })
        })?;
        let key = VerifyingKey::from_bytes(&file.value).map_err(|_| {
            Error::new(format!(
                "--key {}: its key is not a valid Ed25519 public key (the file is damaged); copy BASE.pub again from where it was made",
                path.display()
            ))
        })?;
        check_key_id(path, file.id, &key)?;
        Ok(PublicKey { key })
    }
}

impl SecretKey {
    /// A new random key (from the operating system's generator).
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::new(format!("no randomness: {e}")))?;
        Ok(SecretKey {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Read a secret key file, with the same rules as [`PublicKey::load`].
    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = read_key(path)?;
        let file = parse_key_file(&text, SECRET_HEADER, "seed").map_err(|e| {
            key_file_error(path, e, "BASE.key", || {
                if text.starts_with(PUBLIC_HEADER) {
                    "is a public key, not a secret key"
                } else {
                    "is not an aapi-validator secret key file"
                }
            })
        })?;
        let key = SigningKey::from_bytes(&file.value);
        check_key_id(path, file.id, &key.verifying_key())?;
        Ok(SecretKey { key })
    }

    /// Write `BASE.key` (mode 0600) and `BASE.pub`; neither may exist yet. When one cannot be
    /// written, neither is left behind.
    pub fn save(&self, base: &Path) -> Result<(PathBuf, PathBuf)> {
        if base.as_os_str().as_encoded_bytes().ends_with(b"/") || base.is_dir() {
            return Err(Error::new(format!(
                "-o {} is a directory; give a base name in it, such as {}",
                base.display(),
                base.join("release").display()
            )));
        }
        let with = |ext: &str| {
            let mut s = base.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        let (sec, public) = (with(".key"), with(".pub"));
        let exists = |path: &Path| {
            Error::new(format!(
                "{} exists already, and keygen never replaces a key; nothing was written: choose another -o, or move it away first",
                path.display()
            ))
        };
        if let Some(p) = [&sec, &public]
            .into_iter()
            .find(|p| fs::symlink_metadata(p).is_ok())
        {
            return Err(exists(p));
        }
        let dir = output::out_dir(&sec, Cmd::Keygen)?;
        let id = self.public().id();
        let files = [
            (
                &sec,
                "the secret key",
                0o600,
                format!(
                    "{SECRET_HEADER}\nkey-id: {id}\nseed: {}\n",
                    hex(&self.key.to_bytes())
                ),
            ),
            (
                &public,
                "the public key",
                0o644,
                format!(
                    "{PUBLIC_HEADER}\nkey-id: {id}\nkey: {}\n",
                    hex(self.public().key.as_bytes())
                ),
            ),
        ];
        let mut made: Vec<&Path> = Vec::new();
        for (path, what, mode, text) in files {
            let written = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .and_then(|mut f| {
                    made.push(path);
                    f.write_all(text.as_bytes())?;
                    f.sync_all()
                });
            let Err(e) = written else { continue };
            let left: Vec<String> = made
                .iter()
                .filter(|p| fs::remove_file(p).is_err())
                .map(|p| p.display().to_string())
                .collect();
            if e.kind() == std::io::ErrorKind::AlreadyExists && left.is_empty() {
                return Err(exists(path));
            }
            let remedy = output::remedy(&e, dir, Cmd::Keygen);
            let next = if left.is_empty() {
                format!("nothing was written: {remedy}")
            } else {
                format!(
                    "{} was left behind and could not be removed: remove it, then {remedy}",
                    left.join(" and ")
                )
            };
            return Err(Error::io(&format!("cannot write {what}"), path, e).then(next));
        }
        Ok((sec, public))
    }

    /// Sign the manifest `bytes` (parsed as `m`): the contents of `.aapi/manifest.sig`.
    pub fn sign(&self, bytes: &[u8], m: &Manifest) -> Vec<u8> {
        let statement = statement(&hash::bytes(bytes), m);
        let sig = self.key.sign(statement.as_bytes());
        let file = SignatureFile {
            format: SIGNATURE_FORMAT.into(),
            algorithm: "ed25519".into(),
            key_id: self.public().id(),
            statement,
            signature: hex(&sig.to_bytes()),
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("serializes");
        out.push(b'\n');
        out
    }
}

/// The text of the key file `path`.
fn read_key(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            Error::new(format!(
                "--key {} is not a key file (it is not text); give a file `aapi-validator keygen` wrote",
                path.display()
            ))
        } else {
            Error::read(path, e)
        }
    })
}

/// What a key file holds: its 32-byte value (`key:` or `seed:`) and the key id it states.
struct KeyFile {
    value: [u8; 32],
    id: Option<String>,
}

/// Why a text is not a usable key file.
#[derive(Debug, PartialEq, Eq)]
enum KeyFileError {
    /// Not a key file of this kind: another header, a line that is not `field: value`, no
    /// value, or a value that is not 64 hex digits.
    NotKeyFile,
    /// A field appears more than once (which one was meant is not guessed).
    Twice(String),
}

/// Read the key file `text`, whose first line is `header` and whose value is in `field`.
fn parse_key_file(
    text: &str,
    header: &str,
    field: &str,
) -> std::result::Result<KeyFile, KeyFileError> {
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(KeyFileError::NotKeyFile);
    }
    let (mut value, mut id) = (None, None);
    for line in lines {
        let (k, v) = line.split_once(": ").ok_or(KeyFileError::NotKeyFile)?;
        let slot = if k == field {
            &mut value
        } else if k == "key-id" {
            &mut id
        } else {
            continue;
        };
        if slot.replace(v).is_some() {
            return Err(KeyFileError::Twice(k.to_string()));
        }
    }
    let value = value
        .and_then(unhex::<32>)
        .ok_or(KeyFileError::NotKeyFile)?;
    Ok(KeyFile {
        value,
        id: id.map(str::to_string),
    })
}

/// The message for the key file `path` that cannot be used: `what` says what it is when it is
/// not a key file of the kind wanted, and `wanted` is the file keygen writes (`BASE.pub`).
fn key_file_error(
    path: &Path,
    e: KeyFileError,
    wanted: &str,
    what: impl FnOnce() -> &'static str,
) -> Error {
    match e {
        KeyFileError::NotKeyFile => Error::new(format!(
            "--key {} {}; give the {wanted} file `aapi-validator keygen -o BASE` wrote",
            path.display(),
            what()
        )),
        KeyFileError::Twice(field) => Error::new(format!(
            "--key {} has more than one `{field}:` line, so which key is meant is not known (the file is damaged or was edited); copy {wanted} again from where it was made",
            path.display()
        )),
    }
}

/// Refuse a key file whose `key-id:` line names another key than the one it holds.
fn check_key_id(path: &Path, stated: Option<String>, key: &VerifyingKey) -> Result<()> {
    let actual = key_id(key);
    match stated {
        Some(id) if id != actual => Err(Error::new(format!(
            "--key {}: its key-id line says {}, but the key it holds has id {actual} (the file is damaged or was edited); copy it again from where `aapi-validator keygen` wrote it",
            path.display(),
            id.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// The signature file, `.aapi/manifest.sig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    format: String,
    algorithm: String,
    key_id: String,
    /// The exact signed text.
    statement: String,
    /// 64 bytes in hex.
    signature: String,
}

/// The signed statement for a manifest with digest `digest`.
fn statement(digest: &[u8; 32], m: &Manifest) -> String {
    format!(
        "{STATEMENT_HEADER}\nmanifest-sha256: {}\n{}",
        hex(digest),
        metadata_lines(m)
    )
}

fn metadata_lines(m: &Manifest) -> String {
    format!(
        "name: {}\nversion: {}\nvendor: {}\nabi: {}.{}\ntarget: {}-{}\n",
        m.plugin.name,
        m.plugin.version,
        m.plugin.vendor,
        m.abi.major,
        m.abi.minor,
        m.target.arch,
        m.target.os
    )
}

/// What is known about a package's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// The package carries no signature.
    None,
    /// There is a signature, but no key was given to check it.
    NotChecked {
        /// The key id it claims.
        key_id: String,
    },
    /// The signature verified with a trusted key and binds this manifest.
    Verified {
        /// The key that signed.
        key_id: String,
    },
    /// The signature is malformed or names another manifest, or a key was given and the
    /// signature does not verify with it (see the findings).
    Failed,
}

/// Judge the signature `sig` of the manifest `bytes` (parsed as `m`) against `keys`. With no
/// keys a signature is not required, and one that is present is checked for all but its
/// Ed25519 signature and key: its form, and that its statement names this manifest.
pub fn check(
    sig: Option<&[u8]>,
    bytes: &[u8],
    m: &Manifest,
    keys: &[PublicKey],
) -> (Status, Vec<Finding>) {
    let fail = |code, msg: String| {
        (
            Status::Failed,
            vec![Finding::at(code, crate::manifest::SIGNATURE_PATH, msg)],
        )
    };
    let Some(sig) = sig else {
        return if keys.is_empty() {
            (Status::None, vec![])
        } else {
            (
                Status::Failed,
                vec![Finding::whole(
                    Code::SIGNATURE_MISSING,
                    "a key was given but the package is not signed",
                )],
            )
        };
    };
    let file: SignatureFile = match serde_json::from_slice(sig) {
        Ok(f) => f,
        Err(e) => return fail(Code::SIGNATURE_MALFORMED, e.to_string()),
    };
    if file.format != SIGNATURE_FORMAT || file.algorithm != "ed25519" {
        return fail(
            Code::SIGNATURE_MALFORMED,
            format!(
                "format {:?} / algorithm {:?} not supported",
                file.format, file.algorithm
            ),
        );
    }
    let Some(raw) = unhex::<64>(&file.signature) else {
        return fail(
            Code::SIGNATURE_MALFORMED,
            "signature is not 64 bytes of hex".into(),
        );
    };
    if unhex::<8>(&file.key_id).is_none() {
        return fail(
            Code::SIGNATURE_MALFORMED,
            "key_id is not 8 bytes of lower-case hex".into(),
        );
    }
    if !keys.is_empty()
        && let Some((code, why)) = untrusted(&file, &raw, keys)
    {
        return fail(code, why);
    }
    let digest = hex(&hash::bytes(bytes));
    let Some(rest) = file
        .statement
        .strip_prefix(&format!("{STATEMENT_HEADER}\n"))
    else {
        return fail(
            Code::SIGNATURE_MALFORMED,
            "unknown statement version".into(),
        );
    };
    let Some((first, meta)) = rest.split_once('\n') else {
        return fail(Code::SIGNATURE_MALFORMED, "statement without lines".into());
    };
    if first != format!("manifest-sha256: {digest}") {
        return fail(
            Code::SIGNATURE_MANIFEST,
            format!("signed {first}, the manifest's SHA-256 is {digest}"),
        );
    }
    if meta != metadata_lines(m) {
        return fail(
            Code::SIGNATURE_METADATA,
            format!(
                "signed metadata [{}] differs from the manifest's [{}]",
                meta.trim_end().replace('\n', "; "),
                metadata_lines(m).trim_end().replace('\n', "; ")
            ),
        );
    }
    let key_id = file.key_id;
    if keys.is_empty() {
        (Status::NotChecked { key_id }, vec![])
    } else {
        (Status::Verified { key_id }, vec![])
    }
}

/// Why the Ed25519 signature `raw` of `file` is not one by one of `keys`, if it is not.
fn untrusted(file: &SignatureFile, raw: &[u8; 64], keys: &[PublicKey]) -> Option<(Code, String)> {
    let Some(key) = keys.iter().find(|k| k.id() == file.key_id) else {
        let trusted: Vec<_> = keys.iter().map(PublicKey::id).collect();
        return Some((
            Code::SIGNATURE_UNTRUSTED_KEY,
            format!(
                "signed by key {}, trusted: {}",
                file.key_id,
                trusted.join(", ")
            ),
        ));
    };
    key.key
        .verify_strict(file.statement.as_bytes(), &Signature::from_bytes(raw))
        .is_err()
        .then(|| {
            (
                Code::SIGNATURE_INVALID,
                format!(
                    "the Ed25519 signature does not verify with key {}",
                    file.key_id
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> (Vec<u8>, Manifest) {
        let text = r#"{"format":"aapi-plugin-package","format_version":1,
            "plugin":{"name":"demo","version":"1.0","vendor":"V","workload_types":["files"]},
            "abi":{"major":1,"minor":0},"target":{"arch":"x86_64","os":"linux"},
            "entry":"libdemo.so","files":[{"path":"libdemo.so","type":"file","mode":"0755","size":0,
            "sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#;
        (
            text.as_bytes().to_vec(),
            Manifest::parse(text.as_bytes()).unwrap(),
        )
    }

    fn codes(r: (Status, Vec<Finding>)) -> Vec<Code> {
        r.1.into_iter().map(|f| f.code).collect()
    }

    #[test]
    fn sign_then_verify_and_each_failure_has_its_code() {
        let (bytes, m) = manifest();
        let k = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let sig = k.sign(&bytes, &m);
        let ok = check(Some(&sig), &bytes, &m, &[other.public(), k.public()]);
        assert_eq!(
            ok.0,
            Status::Verified {
                key_id: k.public().id()
            }
        );
        assert!(ok.1.is_empty());
        assert!(matches!(
            check(Some(&sig), &bytes, &m, &[]).0,
            Status::NotChecked { .. }
        ));
        // Without a key, all but the Ed25519 signature and its key is checked.
        for bad in [&b"{}"[..], b"not json", br#"{"format":"x"}"#] {
            assert_eq!(
                codes(check(Some(bad), &bytes, &m, &[])),
                [Code::SIGNATURE_MALFORMED]
            );
        }
        assert_eq!(
            codes(check(None, &bytes, &m, &[k.public()])),
            [Code::SIGNATURE_MISSING]
        );
        assert_eq!(
            codes(check(Some(b"{"), &bytes, &m, &[k.public()])),
            [Code::SIGNATURE_MALFORMED]
        );
        assert_eq!(
            codes(check(Some(&sig), &bytes, &m, &[other.public()])),
            [Code::SIGNATURE_UNTRUSTED_KEY]
        );
        // A flipped bit in the signature.
        let text = String::from_utf8(sig.clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let s = v["signature"].as_str().unwrap();
        let flipped = format!("{}{}", if &s[..1] == "0" { "1" } else { "0" }, &s[1..]);
        let bad = text.replace(s, &flipped);
        assert_eq!(
            codes(check(Some(bad.as_bytes()), &bytes, &m, &[k.public()])),
            [Code::SIGNATURE_INVALID]
        );
        // A valid signature of another manifest.
        let mut other_bytes = bytes.clone();
        other_bytes.push(b' ');
        assert_eq!(
            codes(check(Some(&sig), &other_bytes, &m, &[k.public()])),
            [Code::SIGNATURE_MANIFEST]
        );
        // A valid signature whose statement names other metadata.
        let mut m2 = m.clone();
        m2.plugin.version = "9.9".into();
        let sig2 = k.sign(&bytes, &m2);
        assert_eq!(
            codes(check(Some(&sig2), &bytes, &m, &[k.public()])),
            [Code::SIGNATURE_METADATA]
        );
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let k = SecretKey::generate().unwrap();
        let (sec, public) = k.save(&dir.path().join("release")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&sec).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SecretKey::load(&sec).unwrap().public(), k.public());
        assert_eq!(PublicKey::load(&public).unwrap(), k.public());
        assert!(
            k.save(&dir.path().join("release")).is_err(),
            "never overwrites a key"
        );
        assert!(
            PublicKey::load(&sec).is_err(),
            "a secret key is not a public key"
        );
    }
}
