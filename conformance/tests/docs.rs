//! The registry of checks agrees with docs/contract.md and docs/conformance.md.

use aapi_conformance::checks::{self, CLAUSES, Level};
use std::collections::BTreeSet;

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// (clause, level, party) of every clause row of the contract.
fn contract_clauses() -> Vec<(String, String, String)> {
    read("docs/contract.md")
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.len() > 4 && cells[1].contains('-') && matches!(cells[2], "MUST" | "SHOULD"))
                .then(|| {
                    (
                        cells[1].to_string(),
                        cells[2].to_string(),
                        cells[3].to_string(),
                    )
                })
        })
        .collect()
}

/// Plugin clauses no check can decide from outside (docs/conformance.md says why).
const NOT_CHECKED: &[&str] = &["MEM-1", "RST-9"];

#[test]
fn clause_table_matches_the_contract() {
    let contract = contract_clauses();
    assert!(contract.len() > 60, "the contract's tables were not found");
    for (id, level) in CLAUSES {
        let row = contract
            .iter()
            .find(|(c, _, _)| c == id)
            .unwrap_or_else(|| panic!("{id} is not in docs/contract.md"));
        assert_eq!(row.1, level.as_str(), "level of {id}");
        // ABI-1 binds the framework; `load.abi-version` checks the plugin's side of it.
        if *id != "ABI-1" {
            assert_eq!(row.2, "plugin", "{id} binds the plugin");
        }
    }
    for (id, _, party) in &contract {
        if party == "plugin" && !NOT_CHECKED.contains(&id.as_str()) {
            assert!(
                CLAUSES.iter().any(|(c, _)| c == id),
                "no check enforces {id}"
            );
        }
    }
}

#[test]
fn every_check_is_registered_once_and_cites_a_known_clause() {
    let all = checks::all();
    let ids: BTreeSet<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "duplicate check IDs");
    let cited: BTreeSet<&str> = all.iter().map(|c| c.clause).collect();
    for (clause, level) in CLAUSES {
        assert!(cited.contains(clause), "no check cites {clause}");
        for c in all.iter().filter(|c| c.clause == *clause) {
            assert_eq!(c.level, *level, "{}", c.id);
        }
    }
    assert!(all.iter().any(|c| c.level == Level::Should));
}

#[test]
fn docs_describe_every_check() {
    let doc = read("docs/conformance.md");
    for c in checks::all() {
        let documented = match c.id.split_once('.') {
            Some(("rc", rest))
                if rest.starts_with("null.")
                    || rest.starts_with("bad-handle.")
                    || rest.starts_with("out-params.") =>
            {
                let (family, function) = rest.split_once('.').unwrap();
                doc.contains(&format!("`rc.{family}.<function>`"))
                    && doc.contains(&format!("`{function}`"))
            }
            _ => doc.contains(&format!(
                "| `{}` | {} | {} |",
                c.id,
                c.level.as_str(),
                c.clause
            )),
        };
        assert!(
            documented,
            "docs/conformance.md does not document {} ({} {})",
            c.id,
            c.level.as_str(),
            c.clause
        );
    }
}

#[test]
fn credentials_format_is_documented_as_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("credentials.toml");
    std::fs::write(&toml, "\"files.password\" = \"s3cret\"\n").unwrap();
    assert_eq!(
        aapi_conformance::profile::read_credentials(&toml).unwrap(),
        vec![("files.password".to_string(), "s3cret".to_string())]
    );
    // aapi-host's `--credentials` format is not accepted: one file does not serve both.
    let host = dir.path().join("credentials.env");
    std::fs::write(&host, "files.password=s3cret\n").unwrap();
    let err = aapi_conformance::profile::read_credentials(&host)
        .unwrap_err()
        .to_string();
    assert!(err.contains("key = \"secret\""), "{err}");
    let doc = read("docs/conformance.md");
    assert!(doc.contains("`\"files.password\" = \"s3cret\"`"));
    assert!(doc.contains("`KEY=VALUE` lines (`files.password=s3cret`"));
}
