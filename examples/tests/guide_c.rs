//! docs/guide-c.md §3 stays true: the skeleton, built as §2 builds it (the installed SDK found
//! with pkg-config), passes every check of the `--only load.` run the guide shows, and the guide
//! states how many checks that run has.

mod common;
#[path = "common/tools.rs"]
mod tools;

use common::{must, repo, report};
use std::fs;
use std::process::Command;
use tools::tools;

/// The body of the first fenced block of `lang` after the first occurrence of `after` in `text`.
fn block_after<'a>(text: &'a str, after: &str, lang: &str) -> &'a str {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("docs/guide-c.md no longer says {after:?}"))..];
    let open = format!("```{lang}\n");
    let body = &rest[rest.find(&open).unwrap() + open.len()..];
    &body[..body.find("```").unwrap()]
}

/// The number a guide writes as a word.
fn number(word: &str) -> usize {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    WORDS
        .iter()
        .position(|w| w.eq_ignore_ascii_case(word))
        .or_else(|| word.parse().ok())
        .unwrap_or_else(|| panic!("{word:?} is not a number"))
}

#[test]
fn the_skeleton_passes_the_load_checks_the_guide_counts() {
    let guide = fs::read_to_string(repo().join("docs/guide-c.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    must(
        Command::new(repo().join("scripts/install-sdk"))
            .arg("--prefix")
            .arg(&prefix),
    );
    let work = dir.path().join("my-plugin");
    fs::create_dir(&work).unwrap();
    must(
        Command::new("make")
            .arg("-C")
            .arg(repo().join("examples/c-skeleton"))
            .arg(format!("O={}", work.display()))
            .env("PKG_CONFIG_PATH", prefix.join("share/pkgconfig")),
    );

    // §3's commands, as written, with the tools of this build on PATH.
    let commands = block_after(&guide, "a profile of one line tells it your workload", "sh");
    assert!(commands.contains("--only load."), "{commands}");
    let (conformance, _) = tools();
    let path = format!(
        "{}:{}",
        conformance.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = must(
        Command::new("sh")
            .args(["-ec", commands])
            .current_dir(&work)
            .env("PATH", path),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains(" checks: "))
        .unwrap_or_else(|| panic!("no summary line:\n{}", report(&out)));
    let count = |what: &str| -> usize {
        let at = summary.find(what).unwrap();
        summary[..at]
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let (checks, passed) = (count(" checks:"), count(" passed"));
    assert_eq!(passed, checks, "not every load check passed:\n{stdout}");

    // "All <n> pass for the skeleton (`<n> checks: <n> passed`)".
    let at = guide
        .find(" pass for the skeleton")
        .expect("guide-c says how many load checks pass for the skeleton");
    let claim = guide[..at].rsplit(' ').next().unwrap();
    assert_eq!(
        number(claim),
        checks,
        "guide-c says {claim} load checks; the run has {checks}"
    );
    assert!(
        guide.contains(&format!("`{checks} checks: {checks} passed`")),
        "guide-c does not quote the summary of {checks} checks"
    );
}
