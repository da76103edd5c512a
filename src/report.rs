//! The report: one CSV line per input row, written as rows finish and
//! flushed each time, so a killed run still leaves a readable report; and
//! the run's summary.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::outcome::{Outcome, RowResult, combine_exit};

/// The report's columns, in order. Scripts depend on this order.
pub const COLUMNS: [&str; 20] = [
    "row",
    "user",
    "user_id",
    "login",
    "user_status",
    "factor_type",
    "old_phone",
    "new_phone",
    "outcome",
    "detail",
    "old_factor_id",
    "new_factor_id",
    "new_factor_status",
    "attempts",
    "http_status",
    "error_code",
    "error_summary",
    "error_causes",
    "request_id",
    "elapsed_ms",
];

/// Creates a file only its owner can read: reports and journals hold
/// phone numbers. An existing file is never overwritten.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

pub struct ReportWriter {
    csv: csv::Writer<BufWriter<File>>,
}

impl ReportWriter {
    pub fn create(path: &Path) -> io::Result<ReportWriter> {
        let file = create_private(path)?;
        let mut csv = csv::WriterBuilder::new().from_writer(BufWriter::new(file));
        csv.write_record(COLUMNS)?;
        csv.flush()?;
        Ok(ReportWriter { csv })
    }

    /// Continues an existing report (`--resume`): no second header.
    pub fn append(path: &Path) -> io::Result<ReportWriter> {
        let file = OpenOptions::new().append(true).open(path)?;
        let csv = csv::WriterBuilder::new().from_writer(BufWriter::new(file));
        Ok(ReportWriter { csv })
    }

    pub fn write(&mut self, r: &RowResult) -> io::Result<()> {
        let causes = r.error.error_causes.join(" | ");
        let record: [&str; 20] = [
            &r.row.to_string(),
            &neutralise(&r.user),
            &neutralise(&r.user_id),
            &neutralise(&r.login),
            &neutralise(&r.user_status),
            r.factor_type.as_str(),
            // Phone cells are exact E.164 built by the tool: `+` and digits.
            r.old_phone.as_str(),
            r.new_phone.as_str(),
            r.outcome.as_str(),
            &neutralise(&r.detail),
            &neutralise(&r.old_factor_id),
            &neutralise(&r.new_factor_id),
            &neutralise(&r.new_factor_status),
            &r.attempts.to_string(),
            &r.error
                .http_status
                .map(|s| s.to_string())
                .unwrap_or_default(),
            &neutralise(&r.error.error_code),
            &neutralise(&r.error.error_summary),
            &neutralise(&causes),
            &neutralise(&r.error.request_id),
            &r.elapsed_ms.to_string(),
        ];
        self.csv.write_record(record)?;
        self.csv.flush()
    }

    /// Flushes and syncs the file to disk.
    pub fn finish(mut self) -> io::Result<()> {
        self.csv.flush()?;
        let inner = self
            .csv
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

/// Rewrites the report with one line per row, in row order, the last line
/// of a row winning; returns the counts of the result. The new file
/// replaces the old one atomically, so a kill here loses nothing. Memory:
/// 16 bytes a row.
pub fn compact(path: &Path) -> io::Result<Summary> {
    let len = std::fs::metadata(path)?.len();
    let mut rdr = csv::Reader::from_path(path).map_err(io::Error::other)?;
    let header_end = {
        rdr.byte_headers().map_err(io::Error::other)?;
        rdr.position().byte()
    };
    // (start, outcome) of the last line of each row, by row - 1.
    let mut last: Vec<Option<(u64, Outcome)>> = Vec::new();
    let mut starts: Vec<u64> = Vec::new();
    let mut rec = csv::ByteRecord::new();
    while rdr.read_byte_record(&mut rec).map_err(io::Error::other)? {
        let start = rec.position().map_or(0, |p| p.byte());
        starts.push(start);
        let row = std::str::from_utf8(rec.get(0).unwrap_or_default())
            .ok()
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|r| *r > 0);
        let outcome = std::str::from_utf8(rec.get(8).unwrap_or_default())
            .ok()
            .and_then(Outcome::parse);
        if let (Some(row), Some(outcome)) = (row, outcome) {
            let i = (row - 1) as usize;
            if last.len() <= i {
                last.resize(i + 1, None);
            }
            last[i] = Some((start, outcome));
        }
    }
    starts.sort_unstable();
    let end_of = |start: u64| -> u64 {
        match starts.binary_search(&start) {
            Ok(i) => starts.get(i + 1).copied().unwrap_or(len),
            Err(_) => len,
        }
    };
    let mut src = File::open(path)?;
    let tmp = {
        let mut p = path.as_os_str().to_owned();
        p.push(".tmp");
        std::path::PathBuf::from(p)
    };
    let _ = std::fs::remove_file(&tmp);
    let mut out = BufWriter::new(create_private(&tmp)?);
    let mut summary = Summary::new("");
    let mut copy = |from: u64, to: u64, out: &mut BufWriter<File>| -> io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        src.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        (&mut src).take(to - from).read_to_end(&mut buf)?;
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        out.write_all(&buf)
    };
    copy(0, header_end, &mut out)?;
    for (i, entry) in last.iter().enumerate() {
        if let Some((start, outcome)) = entry {
            copy(*start, end_of(*start), &mut out)?;
            let mut r = RowResult::new(i as u64 + 1, "", "", *outcome);
            r.outcome = *outcome;
            summary.count(&r);
        }
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(summary)
}

/// A cell that starts with `=`, `+`, `-`, `@`, tab or CR would be read as
/// a formula by spreadsheets; a leading `'` keeps it text.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// Counts per outcome and totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub command: String,
    pub rows: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub requests: u64,
    pub throttled: u64,
    pub wall_time_ms: u64,
    pub exit_code: u8,
    pub interrupted: bool,
    pub stopped_by: Option<String>,
    pub report: Option<String>,
    /// Rows whose user was left without the factor: the ones to fix now.
    pub unrestored_rows: Vec<u64>,
}

impl Summary {
    pub fn new(command: &str) -> Summary {
        Summary {
            command: command.to_string(),
            ..Summary::default()
        }
    }

    pub fn count(&mut self, r: &RowResult) {
        self.rows += 1;
        *self.outcomes.entry(r.outcome.as_str()).or_default() += 1;
        self.exit_code = combine_exit(self.exit_code, r.outcome.exit_code());
        if r.outcome == Outcome::FailedUnrestored {
            self.unrestored_rows.push(r.row);
        }
    }

    pub fn get(&self, o: Outcome) -> u64 {
        self.outcomes.get(o.as_str()).copied().unwrap_or(0)
    }

    /// The human summary for stderr.
    pub fn render(&self, wall: Duration) -> String {
        let mut out = String::new();
        let counts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| self.get(**o) > 0)
            .map(|o| format!("{} {}", o, self.get(*o)))
            .collect();
        out.push_str(&format!(
            "{} rows: {}\n{} requests, {} throttled (429), {:.1}s",
            self.rows,
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            },
            self.requests,
            self.throttled,
            wall.as_secs_f64()
        ));
        if let Some(report) = &self.report {
            out.push_str(&format!("\nreport: {report}"));
        }
        if !self.unrestored_rows.is_empty() {
            let rows: Vec<String> = self
                .unrestored_rows
                .iter()
                .take(20)
                .map(u64::to_string)
                .collect();
            out.push_str(&format!(
                "\n!!! {} USER(S) NOW HAVE NO FACTOR OF THIS TYPE (failed_unrestored), rows {}{}.\n!!! Their old numbers are in the report's old_phone column: re-enroll them now.",
                self.unrestored_rows.len(),
                rows.join(", "),
                if self.unrestored_rows.len() > 20 { ", ..." } else { "" }
            ));
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut f = BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(&mut f, self)?;
        f.write_all(b"\n")?;
        f.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_but_plain_ones_are_not() {
        assert_eq!(neutralise("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(neutralise("@sum"), "'@sum");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("pat@example.com"), "pat@example.com");
    }

    #[test]
    fn report_has_the_contract_columns_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ReportWriter::create(&path).unwrap();
        let mut r = RowResult::new(3, "=cmd", "sms", Outcome::Updated);
        r.new_phone = "+12135550113".into();
        w.write(&r).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), COLUMNS.join(","));
        let line = lines.next().unwrap();
        assert!(
            line.starts_with("3,'=cmd,,,,sms,,+12135550113,updated,"),
            "{line}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            ReportWriter::create(&path).is_err(),
            "an existing report must not be overwritten"
        );
    }

    #[test]
    fn compaction_keeps_the_last_line_of_each_row_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ReportWriter::create(&path).unwrap();
        let mut r2 = RowResult::new(2, "b", "sms", Outcome::NotAttempted);
        r2.detail = "multi\nline \"quoted\"".into();
        w.write(&r2).unwrap();
        w.write(&RowResult::new(1, "a", "sms", Outcome::Updated))
            .unwrap();
        w.finish().unwrap();
        let mut w = ReportWriter::append(&path).unwrap();
        w.write(&RowResult::new(2, "b", "sms", Outcome::Unchanged))
            .unwrap();
        w.finish().unwrap();
        let s = compact(&path).unwrap();
        assert_eq!(s.rows, 2);
        assert_eq!(s.get(Outcome::Unchanged), 1);
        assert_eq!(s.get(Outcome::NotAttempted), 0);
        let mut rdr = csv::Reader::from_path(&path).unwrap();
        let rows: Vec<(String, String)> = rdr
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_string(), r[8].to_string())
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("1".into(), "updated".into()),
                ("2".into(), "unchanged".into())
            ]
        );
    }

    #[test]
    fn summary_exit_code_and_unrestored_rows() {
        let mut s = Summary::new("apply");
        s.count(&RowResult::new(1, "a", "sms", Outcome::Updated));
        s.count(&RowResult::new(2, "b", "sms", Outcome::Invalid));
        assert_eq!(s.exit_code, 1);
        s.count(&RowResult::new(3, "c", "sms", Outcome::FailedUnrestored));
        s.count(&RowResult::new(4, "d", "sms", Outcome::NotAttempted));
        assert_eq!(s.exit_code, 3);
        assert_eq!(s.unrestored_rows, vec![3]);
        assert!(s.render(Duration::from_secs(1)).contains("NO FACTOR"));
    }
}
