//! The reconciliation report as people and programs read it: a table per flow, CSV (one line
//! per row) or JSON (the whole report).

use std::io::Write;

use super::{Report, Row, Verdict};

/// Conversations a table cell lists before it says how many more there are.
const LISTED: usize = 3;

const HEADER: [&str; 9] = [
    "source",
    "metric",
    "genesys",
    "ours",
    "difference",
    "expected (why)",
    "unexplained",
    "conversations lacking",
    "conversations extra",
];

/// The metric, with an outcome's value.
fn metric(row: &Row) -> String {
    match &row.subject.value {
        Some(value) => format!("{} ({value})", row.subject.metric),
        None => row.subject.metric.clone(),
    }
}

fn expected(row: &Row) -> String {
    row.expected
        .iter()
        .map(|(reason, keys)| format!("{keys}: {}", reason.describe()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn listed(conversations: &[String]) -> String {
    let mut text = conversations
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    if conversations.len() > LISTED {
        text.push_str(&format!(" … (+{})", conversations.len() - LISTED));
    }
    text
}

/// The unexplained keys, saying how many are stuck and what delivers them.
fn unexplained(row: &Row) -> String {
    if row.stuck > 0 {
        format!(
            "{} ({} stuck: run flow-metrics redrive)",
            row.unexplained, row.stuck
        )
    } else {
        row.unexplained.to_string()
    }
}

fn signed(difference: i64) -> String {
    if difference > 0 {
        format!("+{difference}")
    } else {
        difference.to_string()
    }
}

/// A table per flow, then the coverage of each flow and whether the interval is complete.
pub fn write_table(report: &Report, threshold: u64, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "reconcile {}", report.interval)?;
    if let Some(until) = report.available_until {
        writeln!(out, "Genesys's conversation details hold data up to {until}")?;
    }
    let flows: std::collections::BTreeSet<&str> =
        report.rows.iter().map(|row| row.subject.flow.as_str()).collect();
    let coverage = report.coverage();
    for flow in flows {
        writeln!(out)?;
        match coverage.get(flow) {
            Some(share) => writeln!(out, "flow {flow}: coverage {:.1}%", share * 100.0)?,
            None => writeln!(out, "flow {flow}: Genesys counted nothing")?,
        }
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::ASCII_MARKDOWN);
        table.set_header(HEADER);
        for row in report.rows.iter().filter(|row| row.subject.flow == flow) {
            table.add_row([
                row.subject.source.to_owned(),
                metric(row),
                row.genesys.to_string(),
                row.ours.to_string(),
                signed(row.difference),
                expected(row),
                unexplained(row),
                listed(&row.lacking),
                listed(&row.extra),
            ]);
        }
        for column in [2, 3, 4, 6] {
            if let Some(column) = table.column_mut(column) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        writeln!(out, "{table}")?;
    }
    let unexplained: u64 = report.rows.iter().map(|row| row.unexplained).sum();
    writeln!(out)?;
    if report.exceeds(threshold) {
        writeln!(
            out,
            "incomplete: {unexplained} key(s) counted on one side only for no known reason (threshold {threshold} per row)"
        )?;
    }
    if let Some(until) = report.available_only_until() {
        writeln!(
            out,
            "partial: Genesys's details are available only until {until}; reconcile again after it"
        )?;
    }
    if report.verdict(threshold) == Verdict::Complete {
        writeln!(
            out,
            "complete: every difference is explained (unexplained {unexplained}, threshold {threshold} per row)"
        )?;
    }
    Ok(())
}

/// CSV with a header line; conversations separated by spaces, reasons by `; `. `stuck` (of
/// `unexplained`, claims whose lease is over) and `coverage` (the row's flow's, empty where
/// Genesys counted nothing) come last, after the columns they were added to.
pub fn write_csv(report: &Report, out: &mut dyn Write) -> Result<(), csv::Error> {
    let coverage = report.coverage();
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "source",
        "flow",
        "metric",
        "value",
        "genesys",
        "ours",
        "difference",
        "expected",
        "unexplained",
        "lacking",
        "extra",
        "stuck",
        "coverage",
    ])?;
    for row in &report.rows {
        writer.write_record([
            row.subject.source.to_owned(),
            row.subject.flow.clone(),
            row.subject.metric.clone(),
            row.subject.value.clone().unwrap_or_default(),
            row.genesys.to_string(),
            row.ours.to_string(),
            row.difference.to_string(),
            expected(row),
            row.unexplained.to_string(),
            row.lacking.join(" "),
            row.extra.join(" "),
            row.stuck.to_string(),
            coverage
                .get(row.subject.flow.as_str())
                .map(f64::to_string)
                .unwrap_or_default(),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// The report as JSON: `{"interval", "available_until", "verdict", "coverage": {flow: share},
/// "rows": [{"source", "flow", "metric", "value"?, "genesys", "ours", "difference",
/// "expected": {reason: keys}, "unexplained", "stuck", "lacking", "extra"}]}`.
pub fn write_json(report: &Report, threshold: u64, out: &mut dyn Write) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Whole<'a> {
        interval: &'a str,
        available_until: Option<jiff::Timestamp>,
        verdict: Verdict,
        coverage: std::collections::BTreeMap<&'a str, f64>,
        rows: &'a [Row],
    }
    let whole = Whole {
        interval: &report.interval,
        available_until: report.available_until,
        verdict: report.verdict(threshold),
        coverage: report.coverage(),
        rows: &report.rows,
    };
    serde_json::to_writer_pretty(&mut *out, &whole)?;
    writeln!(out)
}
