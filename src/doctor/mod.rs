//! `flow-metrics doctor`'s report: a checklist of the deployed chain, link by link in the order
//! an event travels it (Genesys's partner event source and bus, the rule, the function, the
//! DataDog key, the points delivered, the dead letters, the ledger table, the Genesys names API).
//! Each check passes, warns (worth a look; the exit status stays 0) or fails, and a failed one
//! says what is wrong and what fixes it. The report renders as an aligned checklist, readable in
//! a terminal and in CI logs alike, or as JSON for scripts.
//!
//! This file is the model and its rendering, and calls nothing. The checks, which read AWS,
//! DataDog and Genesys (never writing), are its children, one per link; `walk.rs` runs them.

mod calls;
mod datadog;
mod dead_letters;
mod delivery;
mod function;
mod ledger;
mod names;
mod rule;
mod source;
mod walk;

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

pub use walk::{WalkOptions, walk};

/// A link of the chain, in the order an event travels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Source,
    Rule,
    Function,
    #[serde(rename = "datadog")]
    DataDog,
    Delivery,
    DeadLetters,
    Ledger,
    Names,
}

impl Link {
    /// Every link, in order.
    pub const ALL: [Link; 8] = [
        Link::Source,
        Link::Rule,
        Link::Function,
        Link::DataDog,
        Link::Delivery,
        Link::DeadLetters,
        Link::Ledger,
        Link::Names,
    ];

    /// Its place in the chain, from 1.
    pub fn number(self) -> usize {
        Link::ALL
            .iter()
            .position(|link| *link == self)
            .unwrap_or_default()
            + 1
    }

    pub fn title(self) -> &'static str {
        match self {
            Link::Source => "Genesys partner event source and bus",
            Link::Rule => "EventBridge rule",
            Link::Function => "Lambda function",
            Link::DataDog => "DataDog API key",
            Link::Delivery => "points delivered to DataDog",
            Link::DeadLetters => "dead letters",
            Link::Ledger => "ledger table",
            Link::Names => "Genesys names API",
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Worth a look; does not fail the exit status.
    Warn,
    Fail,
}

impl Status {
    /// Its mark in the checklist: the same width for all three.
    fn mark(self) -> &'static str {
        match self {
            Status::Pass => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        }
    }
}

/// One item of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub link: Link,
    pub name: &'static str,
    pub status: Status,
    /// What was found; may span lines.
    pub detail: String,
    /// What fixes it: a command or a console step (always given when it fails).
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(link: Link, name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            link,
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(link: Link, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::pass(link, name, detail)
        }
    }

    pub fn fail(link: Link, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            fix: Some(fix.into()),
            ..Check::pass(link, name, detail)
        }
    }
}

/// The whole checklist of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub stack: String,
    pub region: String,
    /// In chain order; within a link, in the order the checks were made.
    pub checks: Vec<Check>,
}

/// What the legend says of the marks and the exit status.
const LEGEND: &str = "[ok] passed; [warn] worth a look, the exit status stays 0 (such as no \
                      event in the last hour of a closed centre); [FAIL] broken, its fix below it: \
                      exit status 1";

impl Report {
    /// A report of `checks`, put in chain order (the order within a link kept).
    pub fn new(stack: &str, region: &str, mut checks: Vec<Check>) -> Report {
        checks.sort_by_key(|check| check.link);
        Report {
            stack: stack.to_owned(),
            region: region.to_owned(),
            checks,
        }
    }

    /// How many checks came out `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|check| check.status == status).count()
    }

    /// 1 when a check failed, else 0 (warnings do not fail).
    pub fn exit_status(&self) -> u8 {
        u8::from(self.count(Status::Fail) > 0)
    }

    /// The worst status of all.
    pub fn status(&self) -> Status {
        self.checks
            .iter()
            .map(|check| check.status)
            .max()
            .unwrap_or(Status::Pass)
    }

    /// The aligned checklist: per link its title, then one line per check (mark, name, detail),
    /// a detail's further lines and a failure's fix indented under the detail.
    pub fn to_text(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|check| check.name.chars().count())
            .max()
            .unwrap_or_default();
        let indent = " ".repeat(2 + 6 + 1 + width + 2);
        let mut text = format!(
            "flow-metrics doctor: stack {} in {}, link by link\n",
            self.stack, self.region
        );
        let mut link = None;
        for check in &self.checks {
            if link != Some(check.link) {
                link = Some(check.link);
                let _ = writeln!(text, "\n{}. {}", check.link.number(), check.link.title());
            }
            let mut lines = check.detail.lines();
            let first = lines.next().unwrap_or_default();
            let _ = writeln!(text, "  {} {:width$}  {first}", check.status.mark(), check.name);
            for line in lines {
                let _ = writeln!(text, "{indent}{line}");
            }
            if let (Some(fix), Status::Warn | Status::Fail) = (&check.fix, check.status) {
                let mut fix_lines = fix.lines();
                let _ = writeln!(text, "{indent}fix: {}", fix_lines.next().unwrap_or_default());
                for line in fix_lines {
                    let _ = writeln!(text, "{indent}     {line}");
                }
            }
        }
        let _ = writeln!(
            text,
            "\n{} failed, {} warning(s), {} passed.\n{LEGEND}.",
            self.count(Status::Fail),
            self.count(Status::Warn),
            self.count(Status::Pass),
        );
        text
    }

    /// The report as JSON: the deployment, the overall status and exit status, the counts,
    /// and every check with its link's number and title.
    pub fn to_json(&self) -> Value {
        let checks: Vec<Value> = self
            .checks
            .iter()
            .map(|check| {
                json!({
                    "link": check.link.number(),
                    "link_id": check.link,
                    "link_title": check.link.title(),
                    "name": check.name,
                    "status": check.status,
                    "detail": check.detail,
                    "fix": check.fix,
                })
            })
            .collect();
        json!({
            "stack": self.stack,
            "region": self.region,
            "status": self.status(),
            "exit_status": self.exit_status(),
            "passed": self.count(Status::Pass),
            "warnings": self.count(Status::Warn),
            "failed": self.count(Status::Fail),
            "checks": checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report::new(
            "GenesysFlowMetrics",
            "eu-west-1",
            vec![
                Check::fail(
                    Link::DeadLetters,
                    "dead-letter queue",
                    "2 message(s) wait\nthe oldest 3h old",
                    "flow-metrics drain --stack GenesysFlowMetrics",
                ),
                Check::pass(Link::Source, "event source", "ACTIVE"),
                Check::warn(
                    Link::Rule,
                    "matched events",
                    "0 in the last hour, 12 in the last day",
                    "if the centre is open: the integration",
                ),
                Check::pass(Link::Source, "event bus", "exists"),
            ],
        )
    }

    #[test]
    fn checks_go_in_chain_order_keeping_their_order_within_a_link() {
        let names: Vec<&str> = report().checks.iter().map(|check| check.name).collect();
        assert_eq!(
            names,
            ["event source", "event bus", "matched events", "dead-letter queue"]
        );
    }

    #[test]
    fn a_failure_fails_the_exit_status_and_a_warning_does_not() {
        let report = report();
        assert_eq!(report.exit_status(), 1);
        assert_eq!(report.status(), Status::Fail);
        let warned = Report::new(
            "S",
            "r",
            report
                .checks
                .into_iter()
                .filter(|check| check.status != Status::Fail)
                .collect(),
        );
        assert_eq!((warned.exit_status(), warned.status()), (0, Status::Warn));
        assert_eq!(Report::new("S", "r", Vec::new()).status(), Status::Pass);
    }

    #[test]
    fn the_text_is_an_aligned_checklist_with_fixes_under_their_detail() {
        let text = report().to_text();
        let expected = "\
flow-metrics doctor: stack GenesysFlowMetrics in eu-west-1, link by link

1. Genesys partner event source and bus
  [ok]   event source       ACTIVE
  [ok]   event bus          exists

2. EventBridge rule
  [warn] matched events     0 in the last hour, 12 in the last day
                            fix: if the centre is open: the integration

6. dead letters
  [FAIL] dead-letter queue  2 message(s) wait
                            the oldest 3h old
                            fix: flow-metrics drain --stack GenesysFlowMetrics
";
        assert!(text.starts_with(expected), "{text}");
        assert!(
            text.ends_with(&format!("\n1 failed, 1 warning(s), 2 passed.\n{LEGEND}.\n")),
            "{text}"
        );
    }

    #[test]
    fn the_json_carries_every_check_and_the_exit_status() {
        let json = report().to_json();
        assert_eq!(json["status"], "fail");
        assert_eq!(json["exit_status"], 1);
        assert_eq!(
            (
                json["passed"].clone(),
                json["warnings"].clone(),
                json["failed"].clone()
            ),
            (json!(2), json!(1), json!(1))
        );
        let last = &json["checks"][3];
        assert_eq!(last["link"], 6);
        assert_eq!(last["link_id"], "dead_letters");
        assert_eq!(last["status"], "fail");
        assert_eq!(last["fix"], "flow-metrics drain --stack GenesysFlowMetrics");
        assert_eq!(json["checks"][0]["fix"], Value::Null);
    }

    #[test]
    fn links_are_numbered_in_chain_order() {
        let numbers: Vec<usize> = Link::ALL.iter().map(|link| link.number()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
        let ids: Vec<Value> = Link::ALL.iter().map(|link| json!(link)).collect();
        assert_eq!(
            ids,
            [
                "source",
                "rule",
                "function",
                "datadog",
                "delivery",
                "dead_letters",
                "ledger",
                "names"
            ]
        );
    }
}
