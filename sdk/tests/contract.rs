//! docs/contract.md is well formed: every clause has a unique ID and a level, every entry point has
//! its reference section, and every clause cited in the docs, the header and the SDK exists.

use aapi_sdk::version::ENTRY_POINTS;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The clause table rows of the contract: ID -> (level, party).
fn clauses() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(root().join("docs/contract.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !is_clause_id(cells[1]) {
            continue;
        }
        let (id, level, party) = (cells[1], cells[2], cells[3]);
        assert!(
            ["MUST", "SHOULD"].contains(&level),
            "{id}: level {level:?} is not MUST or SHOULD"
        );
        assert!(
            ["plugin", "framework"].contains(&party),
            "{id}: party {party:?}"
        );
        assert!(!cells[4].is_empty(), "{id} has no rule text");
        let previous = out.insert(id.to_string(), (level.to_string(), party.to_string()));
        assert!(previous.is_none(), "clause {id} is defined twice");
    }
    out
}

fn is_clause_id(s: &str) -> bool {
    let Some((prefix, number)) = s.split_once('-') else {
        return false;
    };
    [
        "LOAD", "ABI", "LIFE", "RC", "OBJ", "DISC", "RST", "TIME", "THR", "MEM", "SEC", "RES",
    ]
    .contains(&prefix)
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Every clause ID cited in `text` (tokens like `LIFE-3`).
fn cited(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| is_clause_id(t))
        .map(str::to_string)
        .collect()
}

#[test]
fn clauses_are_numbered_densely_per_group() {
    let all = clauses();
    assert!(all.len() >= 60, "only {} clauses", all.len());
    let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for id in all.keys() {
        let (prefix, n) = id.split_once('-').unwrap();
        groups.entry(prefix).or_default().push(n.parse().unwrap());
    }
    for (prefix, mut numbers) in groups {
        numbers.sort_unstable();
        let expected: Vec<u32> = (1..=numbers.len() as u32).collect();
        assert_eq!(numbers, expected, "{prefix} clauses are not numbered 1..n");
    }
}

#[test]
fn every_entry_point_has_a_reference_section() {
    let text = std::fs::read_to_string(root().join("docs/contract.md")).unwrap();
    for name in ENTRY_POINTS {
        assert!(
            text.contains(&format!("\n### {name}\n")),
            "docs/contract.md lacks a section for {name}"
        );
    }
}

#[test]
fn every_cited_clause_exists() {
    let defined = clauses();
    let mut sources = vec![
        root().join("include/aapi.h"),
        root().join("sample-plugin/README.md"),
    ];
    for dir in ["docs", "sdk/src"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            sources.push(entry.unwrap().path());
        }
    }
    for path in sources.iter().filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(path).unwrap();
        for id in cited(&text) {
            assert!(
                defined.contains_key(&id),
                "{} cites {id}, which docs/contract.md does not define",
                path.display()
            );
        }
    }
}

/// The `AAPI_E*` codes named in `text`.
fn codes_in(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("AAPI_E") && t.len() > "AAPI_E".len())
        .collect()
}

/// The header and the contract give each entry point the same return codes: the list after
/// "Returns" in the comment above its prototype in include/aapi.h (from sdk/src/abi.rs) and in
/// its section of the contract's function reference. `AAPI_ENOMEM` and `AAPI_EINTERNAL` are left
/// out: the contract allows them on every call.
#[test]
fn header_and_contract_list_the_same_return_codes() {
    let contract = std::fs::read_to_string(root().join("docs/contract.md")).unwrap();
    let header = std::fs::read_to_string(root().join("include/aapi.h")).unwrap();
    let any_call = ["AAPI_ENOMEM", "AAPI_EINTERNAL"];
    for name in ENTRY_POINTS {
        let start = contract
            .find(&format!("\n### {name}\n"))
            .unwrap_or_else(|| panic!("docs/contract.md lacks a section for {name}"));
        let section = &contract[start + 1..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let returns = &section[section
            .find("**Returns**")
            .unwrap_or_else(|| panic!("the contract gives no **Returns** for {name}"))..];
        // The list ends with its bullet.
        let returns = &returns[..returns.find("\n- ").unwrap_or(returns.len())];
        let mut in_contract = codes_in(returns);

        let prototype = header
            .find(&format!("extern int {name}("))
            .unwrap_or_else(|| panic!("include/aapi.h does not declare {name}"));
        let comment = &header[header[..prototype].rfind("/**").unwrap()..prototype];
        let returns = &comment[comment.find("Returns").unwrap_or_else(|| {
            panic!("the comment of {name} in include/aapi.h gives no Returns")
        })..];
        let mut in_header = codes_in(returns);

        for code in any_call {
            in_contract.remove(code);
            in_header.remove(code);
        }
        assert!(!in_contract.is_empty(), "{name}: no codes in the contract");
        assert_eq!(
            in_header, in_contract,
            "{name}: the return codes in include/aapi.h (sdk/src/abi.rs) differ from \
             docs/contract.md"
        );
    }
}
