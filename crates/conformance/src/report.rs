//! Reports of a run: markdown for people (a procurement team reading a supplier's certificate)
//! and JUnit XML for CI.

use std::fmt::Write as _;
use std::time::Duration;

use crate::{Leftovers, Module};

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The implementation kept the promise.
    Passed,
    /// The implementation broke it; the message says how.
    Failed(String),
    /// The test could not run against this deployment; the message says why.
    Skipped(String),
}

/// One test's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// Stable test id, for example `REC-CREATE-001`.
    pub id: String,
    /// What the test checks, in one line.
    pub title: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// The result of one run of the kit against one endpoint.
#[derive(Debug, Clone)]
pub struct Report {
    /// The module certified.
    pub module: Module,
    /// The endpoint tested.
    pub endpoint: String,
    /// Set when the run could not start (bad endpoint, connection refused): no test ran.
    pub setup_error: Option<String>,
    /// Every test run, in catalogue order.
    pub results: Vec<CaseResult>,
    /// What the run wrote and could not remove.
    pub leftovers: Leftovers,
    /// Wall time of the run.
    pub duration: Duration,
}

impl Report {
    pub(crate) fn new(module: Module, endpoint: &str) -> Self {
        Report {
            module,
            endpoint: endpoint.to_owned(),
            setup_error: None,
            results: Vec::new(),
            leftovers: Leftovers::default(),
            duration: Duration::ZERO,
        }
    }

    /// Number of tests that passed.
    pub fn passed_count(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Number of tests that failed.
    pub fn failed_count(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Number of tests skipped.
    pub fn skipped_count(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    /// True if the run started, ran at least one test and no test failed.
    pub fn passed(&self) -> bool {
        self.setup_error.is_none() && !self.results.is_empty() && self.failed_count() == 0
    }

    /// One line for a terminal or a test log, e.g. `records: 97 passed, 0 failed, 2 skipped`.
    pub fn summary(&self) -> String {
        match &self.setup_error {
            Some(e) => format!("{}: could not run: {e}", self.module),
            None => format!(
                "{}: {} passed, {} failed, {} skipped",
                self.module,
                self.passed_count(),
                self.failed_count(),
                self.skipped_count()
            ),
        }
    }

    /// The report for people: verdict, a table of every test, and what the run left behind.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed() {
            "CONFORMS"
        } else {
            "DOES NOT CONFORM"
        };
        let _ = writeln!(md, "# carerecord conformance: {} module\n", self.module);
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| contract | `{}` (v1) |", self.module.service());
        let _ = writeln!(md, "| endpoint | `{}` |", self.endpoint);
        let _ = writeln!(
            md,
            "| kit | carerecord-conformance {} |",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(md, "| verdict | **{verdict}** |");
        let _ = writeln!(
            md,
            "| tests | {} passed, {} failed, {} skipped, of {} |",
            self.passed_count(),
            self.failed_count(),
            self.skipped_count(),
            self.results.len()
        );
        let _ = writeln!(md, "| duration | {:.1} s |\n", self.duration.as_secs_f64());
        if let Some(e) = &self.setup_error {
            let _ = writeln!(md, "The run could not start: {}\n", escape_md(e));
            return md;
        }
        let failed: Vec<_> = self
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .collect();
        if !failed.is_empty() {
            let _ = writeln!(md, "## Failures\n");
            for r in failed {
                if let Outcome::Failed(m) = &r.outcome {
                    let _ = writeln!(
                        md,
                        "- **{}** {}: {}",
                        r.id,
                        escape_md(&r.title),
                        escape_md(m)
                    );
                }
            }
            md.push('\n');
        }
        let _ = writeln!(md, "## Tests\n");
        let _ = writeln!(
            md,
            "| id | result | what the contract promises | notes |\n|---|---|---|---|"
        );
        for r in &self.results {
            let (result, note) = match &r.outcome {
                Outcome::Passed => ("pass", String::new()),
                Outcome::Failed(m) => ("**FAIL**", escape_md(m)),
                Outcome::Skipped(m) => ("skip", escape_md(m)),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.id,
                result,
                escape_md(&r.title),
                note
            );
        }
        let _ = writeln!(md, "\n## Data left behind\n");
        md.push_str(&self.leftovers_text());
        md
    }

    fn leftovers_text(&self) -> String {
        let l = &self.leftovers;
        if l.patients.is_empty() && l.created.is_empty() {
            return "Nothing.\n".to_owned();
        }
        let mut out = String::from(
            "The contract has no delete, so the run's writes stay. Every one belongs to a patient id \
             the run invented (random UUIDs no real patient has):\n\n",
        );
        for (kind, ids) in &l.created {
            let _ = writeln!(out, "- {} {kind}(s)", ids.len());
        }
        let _ = writeln!(out, "- {} invented patient id(s):\n", l.patients.len());
        let _ = writeln!(out, "```text\n{}\n```", l.patients.join("\n"));
        out
    }

    /// The report for CI: one `<testsuite>` with a `<testcase>` per test.
    pub fn to_junit_xml(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let suite = format!("carerecord-conformance.{}", self.module);
        let errors = usize::from(self.setup_error.is_some());
        // The suites and the suite carry the same counts.
        let counts = format!(
            "tests=\"{}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{}\" time=\"{:.3}\"",
            self.results.len(),
            self.failed_count(),
            self.skipped_count(),
            self.duration.as_secs_f64()
        );
        let _ = writeln!(x, "<testsuites name=\"carerecord-conformance\" {counts}>");
        let _ = writeln!(x, "  <testsuite name=\"{}\" {counts}>", escape_xml(&suite));
        let _ = writeln!(
            x,
            "    <properties><property name=\"endpoint\" value=\"{}\"/><property name=\"contract\" value=\"{}\"/></properties>",
            escape_xml(&self.endpoint),
            self.module.service()
        );
        if let Some(e) = &self.setup_error {
            let _ = writeln!(
                x,
                "    <testcase classname=\"{}\" name=\"setup\" time=\"0\"><error message=\"{}\"/></testcase>",
                escape_xml(&suite),
                escape_xml(e)
            );
        }
        for r in &self.results {
            let classname = format!("{suite}.{}", area(&r.id));
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{} {}\" time=\"{:.3}\"",
                escape_xml(&classname),
                escape_xml(&r.id),
                escape_xml(&r.title),
                r.duration.as_secs_f64()
            );
            match &r.outcome {
                Outcome::Passed => x.push_str("/>\n"),
                Outcome::Failed(m) => {
                    let _ = writeln!(
                        x,
                        "><failure message=\"{}\">{}</failure></testcase>",
                        escape_xml(m),
                        escape_xml(m)
                    );
                }
                Outcome::Skipped(m) => {
                    let _ = writeln!(x, "><skipped message=\"{}\"/></testcase>", escape_xml(m));
                }
            }
        }
        let _ = writeln!(
            x,
            "    <system-out>{}</system-out>",
            escape_xml(&self.leftovers_text())
        );
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// The area of a test id: `REC-CREATE-001` -> `CREATE`.
fn area(id: &str) -> &str {
    id.split('-').nth(1).unwrap_or(id)
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new(Module::Records, "http://127.0.0.1:1");
        r.results = vec![
            CaseResult {
                id: "REC-CREATE-001".into(),
                title: "creates <v1> & | pipes".into(),
                outcome: Outcome::Passed,
                duration: Duration::from_millis(5),
            },
            CaseResult {
                id: "REC-GET-002".into(),
                title: "gets".into(),
                outcome: Outcome::Failed("expected \"x\"\u{1}".into()),
                duration: Duration::from_millis(5),
            },
            CaseResult {
                id: "REC-GET-003".into(),
                title: "skips".into(),
                outcome: Outcome::Skipped("no token".into()),
                duration: Duration::ZERO,
            },
        ];
        r.leftovers.patients.push("p1".into());
        r.leftovers
            .created
            .insert("record".into(), vec!["r1".into()]);
        r
    }

    #[test]
    fn counts_and_verdict() {
        let r = sample();
        assert_eq!(
            (r.passed_count(), r.failed_count(), r.skipped_count()),
            (1, 1, 1)
        );
        assert!(!r.passed());
        assert_eq!(r.summary(), "records: 1 passed, 1 failed, 1 skipped");
        let mut ok = r.clone();
        ok.results.remove(1);
        assert!(ok.passed());
        assert!(
            !Report::new(Module::Records, "x").passed(),
            "a run with no test never passes"
        );
    }

    #[test]
    fn junit_is_escaped_and_counts_match() {
        let x = sample().to_junit_xml();
        for expected in [
            "tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\"",
            "name=\"REC-CREATE-001 creates &lt;v1&gt; &amp; | pipes\"",
            "classname=\"carerecord-conformance.records.GET\"",
            "<failure message=\"expected &quot;x&quot;\u{FFFD}\"",
            "<skipped message=\"no token\"/>",
        ] {
            assert!(x.contains(expected), "{expected} in {x}");
        }
        assert_eq!(x.matches("<testcase").count(), 3);
    }

    #[test]
    fn markdown_lists_failures_and_leftovers() {
        let md = sample().to_markdown();
        for expected in [
            "**DOES NOT CONFORM**",
            "| REC-CREATE-001 | pass | creates <v1> & \\| pipes |  |",
            "- **REC-GET-002** gets: expected \"x\"",
            "- 1 record(s)",
            "p1",
        ] {
            assert!(md.contains(expected), "{expected} in {md}");
        }
    }

    #[test]
    fn setup_error_is_reported() {
        let mut r = Report::new(Module::Access, "http://nowhere");
        r.setup_error = Some("cannot connect".into());
        assert!(!r.passed());
        assert!(r.to_markdown().contains("could not start: cannot connect"));
        assert!(
            r.to_junit_xml()
                .contains("<error message=\"cannot connect\"/>")
        );
    }
}
