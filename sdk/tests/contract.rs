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
