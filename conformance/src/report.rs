//! Results of a run and their three renderings: terminal summary, JSON and JUnit XML.

use crate::checks::Level;
use crate::profile::Exclusions;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    /// The plugin did what the clause says.
    Passed,
    /// A MUST clause was broken.
    Failed,
    /// A SHOULD clause was broken.
    Warning,
    /// The check does not apply (a capability is not declared...); the reason says why.
    Skipped(String),
    /// The vendor waived the check in the exclude file, for this reason.
    Waived(String),
    /// A check it needs did not pass (its ID); this one could not be judged.
    Blocked(String),
    /// The runner failed (not the plugin): the message says how.
    Error(String),
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Passed => "PASS",
            Status::Failed => "FAIL",
            Status::Warning => "WARN",
            Status::Skipped(_) => "SKIP",
            Status::Waived(_) => "WAIVED",
            Status::Blocked(_) => "BLOCKED",
            Status::Error(_) => "ERROR",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Check ID.
    pub id: String,
    /// Group.
    pub group: String,
    /// Contract clause.
    pub clause: String,
    /// Clause level.
    pub level: Level,
    /// What the plugin should do.
    pub expectation: String,
    /// Outcome.
    #[serde(flatten)]
    pub status: Status,
    /// What happened (violations, crashes, timeouts).
    pub findings: Vec<String>,
    /// The plugin's last log lines during the check (failures only).
    pub log: Vec<String>,
    /// Wall time of the check's worker processes.
    pub duration_ms: u64,
}

impl CheckResult {
    /// For a blocked check, why: the check it needs did not pass, or (a check that does not
    /// need it) its worker stopped the same way as that failed step, which is then reported.
    pub fn blocked_reason(&self) -> Option<String> {
        let Status::Blocked(b) = &self.status else {
            return None;
        };
        let needed = crate::checks::find(&self.id)
            .is_some_and(|d| crate::runner::needs_step(&d, b))
            || crate::probes::probe_for(&self.id).is_some_and(|p| p == *b);
        Some(if needed {
            format!("needs {b}, which did not pass")
        } else {
            match self.findings.first() {
                Some(f) => format!("stopped the same way as {b}, which did not pass: {f}"),
                None => format!("stopped the same way as {b}, which did not pass"),
            }
        })
    }
}

/// Latency of one function over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Entry point.
    pub function: String,
    /// Number of calls.
    pub calls: u64,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Maximum, microseconds.
    pub max_us: u64,
}

/// Counts per status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Passed.
    pub passed: usize,
    /// Failed MUST checks.
    pub failed: usize,
    /// Failed SHOULD checks.
    pub warnings: usize,
    /// Skipped.
    pub skipped: usize,
    /// Waived.
    pub waived: usize,
    /// Blocked by a failed prerequisite.
    pub blocked: usize,
    /// Runner errors.
    pub errors: usize,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The plugin library.
    pub plugin: PathBuf,
    /// Workload type tested.
    pub workload_type: String,
    /// Whether every MUST check passed (skipped and waived ones are listed apart).
    pub conformant: bool,
    /// The exit code of `aapi-conformance run`.
    pub exit_code: i32,
    /// Counts.
    pub summary: Summary,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// Per-function latency.
    pub latency: Vec<Latency>,
    /// Waived checks and reasons.
    pub waivers: Exclusions,
    /// Prefix filter of the run (empty: every check ran).
    pub only: Vec<String>,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// How the profile's teardown command failed, if it did (the run then exits 2 at least).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teardown_error: Option<String>,
}

impl Report {
    /// Build a report and compute its summary and exit code.
    pub fn new(
        plugin: PathBuf,
        workload_type: String,
        checks: Vec<CheckResult>,
        latency: Vec<Latency>,
        waivers: Exclusions,
        only: Vec<String>,
    ) -> Report {
        let mut s = Summary::default();
        for c in &checks {
            match c.status {
                Status::Passed => s.passed += 1,
                Status::Failed => s.failed += 1,
                Status::Warning => s.warnings += 1,
                Status::Skipped(_) => s.skipped += 1,
                Status::Waived(_) => s.waived += 1,
                Status::Blocked(_) => s.blocked += 1,
                Status::Error(_) => s.errors += 1,
            }
        }
        // Blocked MUST checks count as failures only through the failure that blocked them.
        let exit_code = if s.failed > 0 {
            1
        } else if s.errors > 0 || s.blocked > 0 {
            2
        } else {
            0
        };
        Report {
            plugin,
            workload_type,
            conformant: exit_code == 0,
            exit_code,
            summary: s,
            checks,
            latency,
            waivers,
            only,
            duration_ms: 0,
            teardown_error: None,
        }
    }

    /// Record that the teardown command failed: a run that would exit 0 exits 2 (the checks
    /// passed, but the environment may not be clean); a failed run still exits 1.
    pub fn set_teardown_error(&mut self, message: String) {
        if self.exit_code == 0 {
            self.exit_code = 2;
        }
        self.conformant = false;
        self.teardown_error = Some(message);
    }

    /// IDs of the failed MUST checks.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.id.as_str())
            .collect()
    }

    /// Clauses of the failed MUST checks, sorted and deduplicated.
    pub fn failed_clauses(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| c.clause.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The result of one check.
    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The JSON report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// The terminal summary: failures first with clause, expectation, what happened and the
    /// plugin's log lines; then warnings, errors, blocked, skipped and waived checks, latency and
    /// the verdict.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "aapi-conformance: {} (workload {})",
            self.plugin.display(),
            self.workload_type
        );
        let detail = |o: &mut String, c: &CheckResult| {
            let _ = writeln!(
                o,
                "\n{} {}  [{} {}]",
                c.status.word(),
                c.id,
                c.clause,
                c.level.as_str()
            );
            let _ = writeln!(o, "  expected: {}", c.expectation);
            match &c.status {
                Status::Error(e) => {
                    let _ = writeln!(o, "  runner error (not the plugin's fault): {e}");
                }
                _ => {
                    for f in &c.findings {
                        let _ = writeln!(o, "  happened: {f}");
                    }
                }
            }
            if !c.log.is_empty() {
                let _ = writeln!(o, "  plugin log:");
                for l in &c.log {
                    let _ = writeln!(o, "    {l}");
                }
            }
        };
        for c in self.checks.iter().filter(|c| c.status == Status::Failed) {
            detail(&mut o, c);
        }
        for c in self
            .checks
            .iter()
            .filter(|c| matches!(c.status, Status::Error(_)))
        {
            detail(&mut o, c);
        }
        for c in self.checks.iter().filter(|c| c.status == Status::Warning) {
            detail(&mut o, c);
        }
        let listed = |o: &mut String, title: &str, f: &dyn Fn(&CheckResult) -> Option<String>| {
            let items: Vec<String> = self
                .checks
                .iter()
                .filter_map(|c| f(c).map(|r| format!("  {} [{}]: {r}", c.id, c.clause)))
                .collect();
            if !items.is_empty() {
                let _ = writeln!(o, "\n{title} ({}):", items.len());
                for i in items {
                    let _ = writeln!(o, "{i}");
                }
            }
        };
        listed(&mut o, "Blocked", &|c| c.blocked_reason());
        listed(&mut o, "Skipped", &|c| match &c.status {
            Status::Skipped(r) => Some(r.clone()),
            _ => None,
        });
        listed(&mut o, "Waived", &|c| match &c.status {
            Status::Waived(r) => Some(r.clone()),
            _ => None,
        });
        if !self.latency.is_empty() {
            let _ = writeln!(
                o,
                "\nLatency per function (microseconds):\n  {:<34} {:>7} {:>9} {:>9} {:>10}",
                "function", "calls", "p50", "p99", "max"
            );
            for l in &self.latency {
                let _ = writeln!(
                    o,
                    "  {:<34} {:>7} {:>9} {:>9} {:>10}",
                    l.function, l.calls, l.p50_us, l.p99_us, l.max_us
                );
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            o,
            "\n{} checks: {} passed, {} failed, {} warnings, {} skipped, {} waived, {} blocked, {} errors ({:.1} s)",
            self.checks.len(),
            s.passed,
            s.failed,
            s.warnings,
            s.skipped,
            s.waived,
            s.blocked,
            s.errors,
            self.duration_ms as f64 / 1000.0
        );
        if !self.only.is_empty() {
            let _ = writeln!(o, "Only checks starting with {:?} ran.", self.only);
        }
        if let Some(e) = &self.teardown_error {
            let _ = writeln!(o, "{e}");
        }
        let _ = writeln!(o, "{}", self.verdict_line(true));
        o
    }

    /// The verdict in one line that stands alone (what `--quiet` prints): what passed, and how
    /// many checks were skipped, waived, selected, blocked or in error.
    pub fn verdict(&self) -> String {
        self.verdict_line(false)
    }

    /// The verdict; `lists_above` when it ends the terminal summary, whose lists it points to.
    fn verdict_line(&self, lists_above: bool) -> String {
        let s = &self.summary;
        let see = if lists_above { ": see above" } else { "" };
        let (every, selected) = if self.only.is_empty() {
            ("every MUST check", String::new())
        } else {
            (
                "every selected MUST check",
                format!(
                    "{} of {} checks selected",
                    self.checks.len(),
                    crate::checks::all().len()
                ),
            )
        };
        let mut notes: Vec<String> = Vec::new();
        if !selected.is_empty() {
            notes.push(selected);
        }
        match self.exit_code {
            0 => {
                let applies = if s.skipped + s.waived > 0 {
                    notes.push(format!("{} skipped, {} waived{see}", s.skipped, s.waived));
                    " that applies"
                } else {
                    ""
                };
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                };
                format!("CONFORMANT: {every}{applies} passed{notes}")
            }
            1 => {
                if s.blocked > 0 {
                    notes.push(format!("{} blocked by them", s.blocked));
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                };
                let n = s.failed;
                let plural = if n == 1 { "" } else { "s" };
                format!("NOT CONFORMANT: {n} MUST check{plural} failed{notes}{see}")
            }
            _ if s.errors + s.blocked == 0 && self.teardown_error.is_some() => {
                "INCOMPLETE: every MUST check passed, but the teardown command failed".to_string()
            }
            _ => format!(
                "INCOMPLETE: the runner could not judge every check ({} runner errors, {} blocked{see})",
                s.errors, s.blocked
            ),
        }
    }

    /// JUnit XML: one testsuite per group, one testcase per check. MUST failures are
    /// `<failure>`, runner errors `<error>`, skipped, waived and blocked checks `<skipped>`;
    /// SHOULD failures pass with the warning in `<system-out>`.
    pub fn to_junit(&self) -> String {
        let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let failures = self.summary.failed;
        let teardown = self.teardown_error.is_some() as usize;
        let _ = writeln!(
            o,
            "<testsuites name=\"aapi-conformance\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" time=\"{:.3}\">",
            self.checks.len() + teardown,
            self.summary.errors + teardown,
            self.duration_ms as f64 / 1000.0
        );
        // A failed teardown is an error of the run: CI shows it, as the exit code (2) does.
        if let Some(e) = &self.teardown_error {
            let _ = writeln!(
                o,
                "  <testsuite name=\"teardown\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\">\n    <testcase classname=\"aapi.conformance.teardown\" name=\"teardown command\" time=\"0.000\">\n      <error message=\"the teardown command failed\">{}</error>\n    </testcase>\n  </testsuite>",
                xml(e)
            );
        }
        let mut groups: Vec<&str> = self.checks.iter().map(|c| c.group.as_str()).collect();
        groups.dedup();
        for g in groups {
            let cs: Vec<&CheckResult> = self.checks.iter().filter(|c| c.group == g).collect();
            let count = |f: &dyn Fn(&Status) -> bool| cs.iter().filter(|c| f(&c.status)).count();
            let _ = writeln!(
                o,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
                xml(g),
                cs.len(),
                count(&|s| *s == Status::Failed),
                count(&|s| matches!(s, Status::Error(_))),
                count(&|s| matches!(
                    s,
                    Status::Skipped(_) | Status::Waived(_) | Status::Blocked(_)
                )),
                cs.iter().map(|c| c.duration_ms).sum::<u64>() as f64 / 1000.0
            );
            for c in cs {
                let _ = write!(
                    o,
                    "    <testcase classname=\"aapi.conformance.{}\" name=\"{} [{} {}]\" time=\"{:.3}\"",
                    xml(g),
                    xml(&c.id),
                    xml(&c.clause),
                    c.level.as_str(),
                    c.duration_ms as f64 / 1000.0
                );
                let body = c.findings.join("\n");
                let log = if c.log.is_empty() {
                    String::new()
                } else {
                    format!("\nplugin log:\n{}", c.log.join("\n"))
                };
                match &c.status {
                    Status::Passed => {
                        let _ = writeln!(o, "/>");
                    }
                    Status::Failed => {
                        let _ = writeln!(
                            o,
                            ">\n      <failure message=\"{}\" type=\"{}\">expected: {}\n{}{}</failure>\n    </testcase>",
                            xml(c.findings.first().map(String::as_str).unwrap_or("failed")),
                            xml(&c.clause),
                            xml(&c.expectation),
                            xml(&body),
                            xml(&log)
                        );
                    }
                    Status::Warning => {
                        let _ = writeln!(
                            o,
                            ">\n      <system-out>WARNING ({} SHOULD): {}{}</system-out>\n    </testcase>",
                            xml(&c.clause),
                            xml(&body),
                            xml(&log)
                        );
                    }
                    Status::Error(e) => {
                        let _ = writeln!(
                            o,
                            ">\n      <error message=\"{}\" type=\"runner\"/>\n    </testcase>",
                            xml(e)
                        );
                    }
                    Status::Skipped(r) => {
                        let _ = writeln!(
                            o,
                            ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                            xml(r)
                        );
                    }
                    Status::Waived(r) => {
                        let _ = writeln!(
                            o,
                            ">\n      <skipped message=\"waived: {}\"/>\n    </testcase>",
                            xml(r)
                        );
                    }
                    Status::Blocked(_) => {
                        let _ = writeln!(
                            o,
                            ">\n      <skipped message=\"blocked: {}\"/>\n    </testcase>",
                            xml(&c.blocked_reason().unwrap_or_default())
                        );
                    }
                }
            }
            let _ = writeln!(o, "  </testsuite>");
        }
        o.push_str("</testsuites>\n");
        o
    }
}

/// Escape text for XML content and attributes, dropping characters XML 1.0 cannot carry.
pub fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            '\t' | '\r' => o.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}
