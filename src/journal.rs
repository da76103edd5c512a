//! The write-ahead journal beside the report (`REPORT.journal`): what makes
//! recovery exact after a crash, a kill or a lost connection.
//!
//! Format: one JSON object per line, append-only, mode 0600.
//!
//! - `{"t":"run", ...}` — written when a run (or a resume) starts: the
//!   input file's path, size and hash, org URL, factor type and activation
//!   mode, so a resume can refuse different input or options.
//! - `{"t":"intent", "row":N, "user_id":..., "old":{...}, "new_phone":...}`
//!   — written and fsync'd **before** a factor is deleted: the old factor's
//!   id, type, status, number and extension, and the number about to be
//!   enrolled. The delete waits until this line is on disk.
//! - `{"t":"done", "row":N, "outcome":..., ...}` — the row's whole result
//!   (the report columns), written after a row that
//!   had an intent (or that enrolled) finished, with the row's full result.
//!
//! An intent without a `done` is a row interrupted between delete and
//! enroll (or just before the delete): `--resume` completes it first, and
//! `rollback` reads the `done` lines of updated rows.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::outcome::RowResult;

/// `REPORT.journal` for a report path.
pub fn path_for(report: &Path) -> PathBuf {
    let mut p = report.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// What identifies a run's input and options, for `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    pub input: String,
    pub input_len: u64,
    pub input_hash: String,
    pub org_url: String,
    pub factor_type: String,
    pub activate: bool,
    /// Every other option that changes what a row does (region, columns,
    /// --if-missing, --also-call, ...), in one comparable line.
    #[serde(default)]
    pub options: String,
}

/// The factor about to be deleted: everything needed to put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldFactor {
    pub id: String,
    pub factor_type: String,
    pub status: String,
    pub phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

/// A row about to delete a factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub row: u64,
    pub user: String,
    pub user_id: String,
    #[serde(default)]
    pub login: String,
    pub old: OldFactor,
    pub new_phone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_extension: Option<String>,
    pub activate: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Record {
    Run(RunHeader),
    Intent(Intent),
    Done(RowResult),
}

/// The journal, shared by the workers (intents) and the collector (done).
#[derive(Clone)]
pub struct Journal {
    file: Arc<Mutex<File>>,
}

impl Journal {
    /// Creates a new journal (never over an existing one).
    pub fn create(path: &Path, header: &RunHeader) -> io::Result<Journal> {
        let file = crate::report::create_private(path)?;
        let j = Journal {
            file: Arc::new(Mutex::new(file)),
        };
        j.append(&Record::Run(header.clone()), true)?;
        Ok(j)
    }

    /// Opens an existing journal to continue it.
    pub fn reopen(path: &Path, header: &RunHeader) -> io::Result<Journal> {
        let file = OpenOptions::new().append(true).open(path)?;
        let j = Journal {
            file: Arc::new(Mutex::new(file)),
        };
        j.append(&Record::Run(header.clone()), true)?;
        Ok(j)
    }

    fn append(&self, rec: &Record, durable: bool) -> io::Result<()> {
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(&line)?;
        if durable {
            f.sync_data()?;
        }
        Ok(())
    }

    /// Records an intent and returns once it is on disk.
    pub async fn intent(&self, intent: &Intent) -> io::Result<()> {
        let j = self.clone();
        let rec = Record::Intent(intent.clone());
        tokio::task::spawn_blocking(move || j.append(&rec, true))
            .await
            .map_err(io::Error::other)?
    }

    /// Records a finished row. Synced, so `rollback` can trust it.
    pub fn done(&self, r: &RowResult) -> io::Result<()> {
        self.append(&Record::Done(r.clone()), true)
    }
}

/// What a journal says, read back.
#[derive(Debug, Default)]
pub struct JournalState {
    pub header: Option<RunHeader>,
    /// Intents without a `done`, by row.
    pub open: BTreeMap<u64, Intent>,
    /// The last `done` of each row.
    pub done: BTreeMap<u64, RowResult>,
    /// The last intent of each row, finished or not (what a row left
    /// without its factor needs to try again).
    pub intents: BTreeMap<u64, Intent>,
    /// Lines that could not be read (a torn last line after a kill).
    pub torn_lines: u64,
}

/// Reads a journal. A torn last line (a kill mid-write) is counted and
/// skipped: its record was never acted on, since intents are durable
/// before their delete.
pub fn read(path: &Path) -> io::Result<JournalState> {
    let f = File::open(path)?;
    let mut st = JournalState::default();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(Record::Run(h)) => {
                st.header.get_or_insert(h);
            }
            Ok(Record::Intent(i)) => {
                st.done.remove(&i.row);
                st.intents.insert(i.row, i.clone());
                st.open.insert(i.row, i);
            }
            Ok(Record::Done(d)) => {
                st.open.remove(&d.row);
                st.done.insert(d.row, d);
            }
            Err(_) => st.torn_lines += 1,
        }
    }
    Ok(st)
}

/// A cheap, stable fingerprint of the input file, for `--resume`.
pub fn fingerprint(path: &Path) -> io::Result<(u64, String)> {
    // FNV-1a over the bytes: enough to notice a different or edited file.
    let mut f = BufReader::new(File::open(path)?);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len = 0u64;
    loop {
        let buf = f.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        for b in buf {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let n = buf.len();
        len += n as u64;
        f.consume(n);
    }
    Ok((len, format!("{hash:016x}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    fn header() -> RunHeader {
        RunHeader {
            input: "in.csv".into(),
            input_len: 10,
            input_hash: "ab".into(),
            org_url: "http://127.0.0.1:1/".into(),
            factor_type: "sms".into(),
            activate: true,
            options: String::new(),
        }
    }

    fn intent(row: u64) -> Intent {
        Intent {
            row,
            user: "u".into(),
            user_id: "00u1abc0000000000001".into(),
            login: String::new(),
            old: OldFactor {
                id: "mbl1".into(),
                factor_type: "sms".into(),
                status: "ACTIVE".into(),
                phone: "+12135550101".into(),
                extension: None,
            },
            new_phone: "+12135550201".into(),
            new_extension: None,
            activate: true,
        }
    }

    #[tokio::test]
    async fn open_intents_are_those_without_done_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("r.csv"));
        let j = Journal::create(&path, &header()).unwrap();
        j.intent(&intent(1)).await.unwrap();
        j.intent(&intent(2)).await.unwrap();
        let mut r = RowResult::new(1, "u", "sms", Outcome::Updated);
        r.intent = true;
        j.done(&r).unwrap();
        // A kill in the middle of a write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"t\":\"intent\",\"row\":3,\"us").unwrap();
        let st = read(&path).unwrap();
        assert_eq!(st.header, Some(header()));
        assert_eq!(st.open.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(st.done[&1].outcome, Outcome::Updated);
        assert_eq!(st.torn_lines, 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(
            Journal::create(&path, &header()).is_err(),
            "never over an existing journal"
        );
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "user,phone\n").unwrap();
        let a = fingerprint(&p).unwrap();
        std::fs::write(&p, "user,phone\nx,y\n").unwrap();
        let b = fingerprint(&p).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.0, 11);
    }
}
