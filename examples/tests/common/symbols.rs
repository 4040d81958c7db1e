//! The dynamic symbols of a built library, for the tests that look into one. Included next to
//! `mod common;` as `#[path = "common/symbols.rs"] mod symbols;`.

use crate::common::must;
use std::path::Path;
use std::process::Command;

/// The undefined dynamic symbols of `lib`.
pub fn undefined_symbols(lib: &Path) -> Vec<String> {
    let out = must(Command::new("nm").args(["-D", "--undefined-only"]).arg(lib));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}
