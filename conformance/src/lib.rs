//! The conformance runner for aapi workload plugins.
//!
//! It loads a plugin in worker processes, runs every check of docs/conformance.md against it
//! (each check cites the contract clause it enforces), and reports the results for people
//! (terminal), tools (JSON) and CI (JUnit XML).
//!
//! # Running the suite from a Rust test
//!
//! The runner starts worker processes from an executable that serves worker tasks: it must call
//! [`serve_if_requested`] before anything else. In an ordinary `#[test]`, name the test so the
//! runner can start this test binary again with only that test, which then serves the task:
//!
//! ```no_run
//! use aapi_conformance::{RunOptions, WorkerProgram};
//!
//! #[test]
//! fn conformance() {
//!     // Workers are this test run again: serve them before any setup of the test's own.
//!     aapi_conformance::serve_if_requested();
//!     let mut opts = RunOptions::new("target/debug/libmy_plugin.so");
//!     opts.worker = WorkerProgram::CurrentTest("conformance".into());
//!     let report = aapi_conformance::run(opts).expect("the runner could run");
//!     assert_eq!(report.exit_code, 0, "{}", report.to_text());
//! }
//! ```
//!
//! [`run`] calls [`serve_if_requested`] itself, so the same test function is both the suite and
//! its workers. A binary or a `harness = false` test calls [`serve_if_requested`] first in `main`
//! and uses [`WorkerProgram::CurrentExe`]; an installed `aapi-conformance` binary can serve too
//! ([`WorkerProgram::Program`]).

pub mod checks;
pub mod codes;
mod pipeline;
mod probes;
pub mod profile;
pub mod report;
mod runner;
mod shell;
pub mod signals;
pub mod task;
pub mod tree;
mod worker;

pub use profile::{Exclusions, Profile};
pub use report::{CheckResult, Report, Status};
pub use runner::{RunError, RunOptions, WorkerProgram, run};
pub use worker::serve_if_requested;
