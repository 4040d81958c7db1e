//! Static checks of the entry library with a real ELF parser (the `object` crate). Nothing is
//! loaded or executed: the file's bytes are parsed (through a read-only memory map, see
//! [`crate::map`], so a library of any size costs no heap), the dynamic symbol table is read
//! and the ABI marker's bytes are taken from the section that holds them.

use crate::finding::{Code, Finding};
use crate::map::Map;
use aapi_sdk::abi::aapi_abi_marker_t;
use aapi_sdk::version::{ENTRY_POINTS, MARKER_SIZE, MARKER_SYMBOL, check_compatible};
use object::elf;
use object::read::elf::{Dyn, FileHeader, SectionHeader, Sym};
use object::{Endianness, FileKind, SectionIndex};
use std::collections::HashMap;

/// An architecture a package can target, by the name Rust gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// Name in the manifest (`target.arch`).
    pub name: &'static str,
    /// ELF `e_machine`.
    pub machine: u16,
    /// ELFCLASS64 (true) or ELFCLASS32.
    pub is_64: bool,
    /// ELFDATA2LSB (true) or ELFDATA2MSB.
    pub little_endian: bool,
}

/// The architectures format version 1 knows.
pub const ARCHES: &[Arch] = &[
    def("x86_64", elf::EM_X86_64, true, true),
    def("x86", elf::EM_386, false, true),
    def("aarch64", elf::EM_AARCH64, true, true),
    def("arm", elf::EM_ARM, false, true),
    def("riscv64", elf::EM_RISCV, true, true),
    def("powerpc64le", elf::EM_PPC64, true, true),
    def("powerpc64", elf::EM_PPC64, true, false),
    def("s390x", elf::EM_S390, true, false),
    def("loongarch64", elf::EM_LOONGARCH, true, true),
];

const fn def(name: &'static str, m: elf::Machine, is_64: bool, little_endian: bool) -> Arch {
    Arch {
        name,
        machine: m.0,
        is_64,
        little_endian,
    }
}

/// The architecture called `name` in a manifest.
pub fn arch(name: &str) -> Option<&'static Arch> {
    ARCHES.iter().find(|a| a.name == name)
}

/// The name, as in a manifest, of the architecture this program was built for: the one whose
/// plugins the framework built with it can load.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
        other => other,
    }
}

/// What the entry library says about itself, read without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The architecture, when it is one of [`ARCHES`].
    pub arch: Option<&'static Arch>,
    /// The ABI version recorded in the marker, when the marker is valid.
    pub abi: Option<(u16, u16)>,
}

/// What the manifest says the library must be.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The manifest's architecture.
    pub arch: &'a Arch,
    /// The manifest's ABI version.
    pub abi: (u16, u16),
}

struct Symbol {
    defined: bool,
    bind: u8,
    visibility: u8,
    typ: u8,
    /// The symbol's bytes in the file, or why they cannot be read (for the marker only).
    bytes: Option<Result<Vec<u8>, String>>,
}

struct Raw {
    machine: u16,
    is_64: bool,
    little_endian: bool,
    os_abi: u8,
    e_type: u16,
    pie: bool,
    symbols: HashMap<Vec<u8>, Symbol>,
}

/// Check the entry library at `path` (for messages) with content `data`. Without `expect`,
/// the architecture must only be a known one (used by `pack`, which learns arch and ABI here).
pub fn check(path: &str, data: &[u8], expect: Option<Expect<'_>>) -> (Facts, Vec<Finding>) {
    let mut out = Vec::new();
    let mut facts = Facts {
        arch: None,
        abi: None,
    };
    let raw = match FileKind::parse(data) {
        Ok(FileKind::Elf64) => parse::<elf::FileHeader64<Endianness>>(data),
        Ok(FileKind::Elf32) => parse::<elf::FileHeader32<Endianness>>(data),
        Ok(k) => Err(format!("not an ELF file but {k:?}")),
        Err(_) => Err("not an ELF file (unknown format)".into()),
    };
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            out.push(Finding::at(Code::ELF_INVALID, path, e));
            return (facts, out);
        }
    };
    let describe = |m: u16, is_64: bool, le: bool| {
        let name = ARCHES
            .iter()
            .find(|a| a.machine == m && a.is_64 == is_64 && a.little_endian == le)
            .map_or_else(|| format!("e_machine {m}"), |a| a.name.to_string());
        format!(
            "{name} ({}-bit, {})",
            if is_64 { 64 } else { 32 },
            if le { "little-endian" } else { "big-endian" }
        )
    };
    facts.arch = ARCHES.iter().find(|a| {
        a.machine == raw.machine && a.is_64 == raw.is_64 && a.little_endian == raw.little_endian
    });
    let found = describe(raw.machine, raw.is_64, raw.little_endian);
    match (expect, facts.arch) {
        (Some(e), a) if a != Some(e.arch) => out.push(Finding::at(
            Code::ELF_ARCH,
            path,
            format!(
                "built for {found}, the manifest says {}",
                describe(e.arch.machine, e.arch.is_64, e.arch.little_endian)
            ),
        )),
        (None, None) => out.push(Finding::at(
            Code::ELF_ARCH,
            path,
            format!("built for {found}, which packages cannot target"),
        )),
        _ => {}
    }
    if raw.os_abi != elf::ELFOSABI_SYSV.0 && raw.os_abi != elf::ELFOSABI_GNU.0 {
        out.push(Finding::at(
            Code::ELF_OS,
            path,
            format!("OS ABI {} is not System V or GNU/Linux", raw.os_abi),
        ));
    }
    if raw.e_type != elf::ET_DYN.0 {
        let what = match raw.e_type {
            1 => "a relocatable object",
            2 => "an executable",
            4 => "a core file",
            _ => "an unknown ELF type",
        };
        out.push(Finding::at(
            Code::ELF_NOT_SHARED_OBJECT,
            path,
            format!("{what}, not a shared object"),
        ));
    } else if raw.pie {
        out.push(Finding::at(
            Code::ELF_NOT_SHARED_OBJECT,
            path,
            "a position-independent executable (DF_1_PIE), not a shared object",
        ));
    }
    for name in ENTRY_POINTS {
        match exported(&raw, name) {
            Err(why) => out.push(Finding::at(
                Code::ELF_SYMBOL_MISSING,
                path,
                format!("{name} is {why}"),
            )),
            Ok(s) if s.typ != elf::STT_FUNC.0 && s.typ != elf::STT_GNU_IFUNC.0 => {
                out.push(Finding::at(
                    Code::ELF_SYMBOL_TYPE,
                    path,
                    format!("{name} is exported as {}, not a function", type_name(s.typ)),
                ))
            }
            Ok(_) => {}
        }
    }
    match exported(&raw, MARKER_SYMBOL) {
        Err(why) => out.push(Finding::at(
            Code::ELF_MARKER_MISSING,
            path,
            format!("{MARKER_SYMBOL} is {why}; C plugins write AAPI_DEFINE_ABI_MARKER();"),
        )),
        Ok(s) if s.typ != elf::STT_OBJECT.0 => out.push(Finding::at(
            Code::ELF_SYMBOL_TYPE,
            path,
            format!(
                "{MARKER_SYMBOL} is exported as {}, not data",
                type_name(s.typ)
            ),
        )),
        Ok(s) => match s.bytes.as_ref().expect("marker bytes are read") {
            Err(why) => out.push(Finding::at(Code::ELF_MARKER_INVALID, path, why.clone())),
            Ok(bytes) => match aapi_abi_marker_t::from_bytes(bytes, raw.little_endian) {
                Err(e) => out.push(Finding::at(Code::ELF_MARKER_INVALID, path, e.to_string())),
                Ok(m) => {
                    let abi = (m.abi_major, m.abi_minor);
                    facts.abi = Some(abi);
                    if let Some(e) = expect
                        && e.abi != abi
                    {
                        out.push(Finding::at(
                            Code::ABI_MISMATCH,
                            path,
                            format!(
                                "marker records ABI {}.{}, the manifest says {}.{}",
                                abi.0, abi.1, e.abi.0, e.abi.1
                            ),
                        ));
                    }
                    if let Err(e) = check_compatible(abi.0, abi.1) {
                        out.push(Finding::at(Code::ABI_INCOMPATIBLE, path, e.to_string()));
                    }
                }
            },
        },
    }
    (facts, out)
}

/// [`check`] the library mapped in `map`. If the file shrank while it was parsed, what was
/// parsed is not the file: the findings are replaced by one `FILE_SIZE` finding.
pub fn check_mapped(path: &str, map: &Map, expect: Option<Expect<'_>>) -> (Facts, Vec<Finding>) {
    let checked = check(path, map.bytes(), expect);
    if !map.shrank() {
        return checked;
    }
    let facts = Facts {
        arch: None,
        abi: None,
    };
    let f = Finding::at(
        Code::FILE_SIZE,
        path,
        format!(
            "shrank while it was parsed (it was {} bytes)",
            map.bytes().len()
        ),
    );
    (facts, vec![f])
}

/// The symbol `name` if the dynamic symbol table exports it, or why it does not.
fn exported<'a>(raw: &'a Raw, name: &str) -> Result<&'a Symbol, &'static str> {
    let s = raw
        .symbols
        .get(name.as_bytes())
        .ok_or("not in the dynamic symbol table")?;
    if !s.defined {
        Err("undefined (imported, not exported)")
    } else if s.bind != elf::STB_GLOBAL.0 && s.bind != elf::STB_WEAK.0 {
        Err("local, not global")
    } else if s.visibility == elf::STV_HIDDEN.0 || s.visibility == elf::STV_INTERNAL.0 {
        Err("hidden")
    } else {
        Ok(s)
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        0 => "an untyped symbol",
        1 => "data",
        2 => "a function",
        3 => "a section",
        4 => "a file symbol",
        6 => "a TLS symbol",
        10 => "an indirect function",
        _ => "an unknown symbol type",
    }
}

fn parse<E: FileHeader<Endian = Endianness>>(data: &[u8]) -> Result<Raw, String> {
    let err = |e: object::Error| format!("ELF parse error: {e}");
    let header = E::parse(data).map_err(err)?;
    let endian = header.endian().map_err(err)?;
    let sections = header.sections(endian, data).map_err(err)?;
    if sections.is_empty() {
        return Err("ELF file without section headers".into());
    }
    let mut pie = false;
    if let Some((dyns, _)) = sections.dynamic(endian, data).map_err(err)? {
        for d in dyns {
            if d.d_tag(endian) == elf::DT_FLAGS_1 && d.d_val(endian).into() & elf::DF_1_PIE.0 != 0 {
                pie = true;
            }
        }
    }
    let dynsym = sections
        .symbols(endian, data, elf::SHT_DYNSYM)
        .map_err(err)?;
    let mut symbols = HashMap::new();
    for (i, sym) in dynsym.enumerate().skip(1) {
        let Ok(name) = dynsym.symbol_name(endian, sym) else {
            continue;
        };
        let wanted =
            name == MARKER_SYMBOL.as_bytes() || ENTRY_POINTS.iter().any(|n| n.as_bytes() == name);
        if !wanted {
            continue;
        }
        let section = dynsym.symbol_section(endian, sym, i).map_err(err)?;
        let bytes = (name == MARKER_SYMBOL.as_bytes())
            .then(|| marker_bytes::<E>(&sections, endian, data, section, sym));
        let s = Symbol {
            defined: section.is_some(),
            bind: sym.st_bind().0,
            visibility: sym.st_visibility().0,
            typ: sym.st_type().0,
            bytes,
        };
        // A definition wins over an undefined duplicate (symbol versioning can list both).
        if s.defined || !symbols.contains_key(name) {
            symbols.insert(name.to_vec(), s);
        }
    }
    Ok(Raw {
        machine: header.e_machine(endian).0,
        is_64: header.is_class_64(),
        little_endian: header.is_little_endian(),
        os_abi: header.e_ident().os_abi.0,
        e_type: header.e_type(endian).0,
        pie,
        symbols,
    })
}

/// The marker's bytes, taken from the file data of the section the symbol is defined in.
fn marker_bytes<'data, E: FileHeader<Endian = Endianness>>(
    sections: &object::read::elf::SectionTable<'data, E, &'data [u8]>,
    endian: Endianness,
    data: &'data [u8],
    section: Option<SectionIndex>,
    sym: &E::Sym,
) -> Result<Vec<u8>, String> {
    let index = section.ok_or("the marker symbol is undefined")?;
    let sh = sections
        .section(index)
        .map_err(|e| format!("the marker's section: {e}"))?;
    if sh.sh_type(endian) == elf::SHT_NOBITS {
        return Err(format!(
            "{MARKER_SYMBOL} lies in a section without file data (.bss): it is not constant"
        ));
    }
    let size: u64 = sym.st_size(endian).into();
    if size != 0 && size < MARKER_SIZE as u64 {
        return Err(format!(
            "{MARKER_SYMBOL} is {size} bytes, a marker is {MARKER_SIZE}"
        ));
    }
    let bytes = sh
        .data(endian, data)
        .map_err(|e| format!("the marker's section: {e}"))?;
    let start = Into::<u64>::into(sym.st_value(endian))
        .checked_sub(sh.sh_addr(endian).into())
        .ok_or("the marker's address lies before its section")?;
    let start = usize::try_from(start).map_err(|_| "marker address out of range")?;
    bytes
        .get(start..start.saturating_add(MARKER_SIZE))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| format!("{MARKER_SYMBOL} extends past the end of its section"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_library_that_shrinks_while_parsed_is_a_size_finding() {
        // Any ELF file will do: this test's own executable.
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&exe).unwrap();
        let map = Map::new(&f, 0, exe.len() as u64).unwrap();
        let (_, whole) = check_mapped("t", &map, None);
        assert!(
            !whole
                .iter()
                .any(|f| f.code == Code::FILE_SIZE || f.code == Code::ELF_INVALID),
            "{whole:?}"
        );

        f.set_len(0).unwrap();
        let (facts, shrunk) = check_mapped("t", &map, None);
        assert_eq!(facts.arch, None);
        let shrunk: Vec<String> = shrunk.iter().map(ToString::to_string).collect();
        assert_eq!(
            shrunk,
            [format!(
                "{:<24}t: shrank while it was parsed (it was {} bytes)",
                "FILE_SIZE",
                exe.len()
            )]
        );
    }
}
