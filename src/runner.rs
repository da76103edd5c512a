//! A run from start to end: read the CSV twice without holding its rows,
//! resolve logins to ids (read-only) and index users in the first pass, then
//! stream the rows to N workers in the second, with one collector that owns
//! the report, the progress view and the summary.
//!
//! Everything that can be known without Okta's state — invalid rows,
//! duplicates, conflicts between rows naming one user — is known before the
//! first write.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};

use crate::cli::PlanFormat;
use crate::config::{FailureLimit, Mode, RunConfig, Selection};
use crate::input::{InputError, InputOptions, InputReader, InputRow, RowRequest, UserRef};
use crate::job::{self, JobSettings, Target};
use crate::journal::{self, Journal, RunHeader};
use crate::lock::{LockError, RunLock};
use crate::okta::client::{Client, ClientConfig, OktaError};
use crate::outcome::{Outcome, RowResult};
use crate::pacer::Pacer;
use crate::phone::{self, Phone};
use crate::progress::{Progress, eprint_line};
use crate::report::{ReportWriter, Summary};

/// Exit code for usage, configuration and unreadable input.
pub const EXIT_USAGE: u8 = 2;

/// Streams rows from a blocking reader thread.
type Rows = mpsc::Receiver<Result<InputRow, InputError>>;

fn spawn_reader(path: &Path, opts: &InputOptions) -> Result<Rows, InputError> {
    Ok(spawn_reader_with_kind(path, opts)?.0)
}

/// The rows, and how the user column names users.
fn spawn_reader_with_kind(
    path: &Path,
    opts: &InputOptions,
) -> Result<(Rows, crate::input::UserColumnKind), InputError> {
    let mut reader = InputReader::open(path, opts)?;
    let kind = reader.columns().user_kind;
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        while let Some(item) = reader.next_row() {
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                break;
            }
        }
    });
    Ok((rx, kind))
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// A row's fingerprint: what it says, not where it is.
fn row_check(row: &InputRow) -> u32 {
    let mut h = DefaultHasher::new();
    row.user_raw.hash(&mut h);
    row.phone_raw.hash(&mut h);
    if let Ok(req) = &row.parsed {
        req.phone.hash(&mut h);
        req.old_phone.hash(&mut h);
    }
    h.finish() as u32
}

/// Stands for the number of a row whose number is invalid.
fn unusable_phone() -> Phone {
    Phone {
        e164: String::new(),
        extension: None,
    }
}

fn phone_key(p: &Phone) -> u64 {
    let mut h = DefaultHasher::new();
    p.e164.hash(&mut h);
    p.extension.hash(&mut h);
    h.finish()
}

/// A row whose user could not be resolved in the first pass.
#[derive(Debug, Clone)]
struct Unresolved {
    outcome: Outcome,
    detail: String,
    error: Option<OktaError>,
}

/// One user named by the input.
#[derive(Debug)]
struct Slot {
    phone: u64,
    /// The first data row naming this user (rows are counted in u32).
    first_row: u32,
    /// Index into `Index::names`, or `NO_SLOT` when nothing was resolved
    /// (`validate`).
    name: u32,
    status: u8,
    conflict: bool,
}

const NO_SLOT: u32 = u32::MAX;

/// The per-row index: a slot number per row (4 bytes) and a slot per user.
#[derive(Default)]
struct Index {
    rows: Vec<u32>,
    /// A fingerprint of each row as first read (4 bytes a row), so the
    /// second read can prove it sees the same file.
    checks: Vec<u32>,
    slots: Vec<Slot>,
    /// Okta id and login of the slots that have them (none in `validate`).
    names: Vec<(Box<str>, Option<Box<str>>)>,
    by_user: HashMap<u64, u32>,
    /// (number, slot) of every row while the first pass runs; `finish`
    /// turns it into the few numbers given to more than one user (a sign of
    /// shifted spreadsheet rows) and frees it.
    phones: Vec<(u64, u32)>,
    shared_phones: std::collections::HashSet<u64>,
    unresolved: HashMap<u64, Unresolved>,
    statuses: Vec<String>,
}

impl Index {
    fn status_code(&mut self, status: &str) -> u8 {
        if let Some(i) = self.statuses.iter().position(|s| s == status) {
            return i as u8;
        }
        if self.statuses.len() >= 255 {
            return 255;
        }
        self.statuses.push(status.to_string());
        (self.statuses.len() - 1) as u8
    }

    fn status_name(&self, code: u8) -> &str {
        self.statuses
            .get(usize::from(code))
            .map_or("", String::as_str)
    }

    fn reserve_row(&mut self, row: u64) {
        let idx = (row - 1) as usize;
        if self.rows.len() <= idx {
            self.rows.resize(idx + 1, NO_SLOT);
        }
    }

    fn set_check(&mut self, row: u64, check: u32) {
        let idx = (row - 1) as usize;
        if self.checks.len() <= idx {
            self.checks.resize(idx + 1, 0);
        }
        self.checks[idx] = check;
    }

    fn check_of(&self, row: u64) -> Option<u32> {
        self.checks.get((row - 1) as usize).copied()
    }

    fn add(&mut self, row: u64, key: u64, id: &str, login: Option<&str>, status: &str, phone: u64) {
        self.reserve_row(row);
        let status = self.status_code(status);
        let slot = match self.by_user.get(&key) {
            Some(&s) => {
                let slot = &mut self.slots[s as usize];
                if slot.phone != phone {
                    slot.conflict = true;
                }
                slot.first_row = slot.first_row.min(row as u32);
                s
            }
            None => {
                let s = self.slots.len() as u32;
                let name = if id.is_empty() {
                    NO_SLOT
                } else {
                    self.names.push((id.into(), login.map(Into::into)));
                    (self.names.len() - 1) as u32
                };
                self.slots.push(Slot {
                    phone,
                    first_row: row as u32,
                    name,
                    status,
                    conflict: false,
                });
                self.by_user.insert(key, s);
                s
            }
        };
        self.rows[(row - 1) as usize] = slot;
        if phone != phone_key(&unusable_phone()) {
            self.phones.push((phone, slot));
        }
    }

    /// Ends the first pass: finds the numbers given to several users.
    fn finish(&mut self) {
        let mut phones = std::mem::take(&mut self.phones);
        phones.sort_unstable();
        phones.dedup();
        for pair in phones.windows(2) {
            if pair[0].0 == pair[1].0 {
                self.shared_phones.insert(pair[0].0);
            }
        }
    }

    fn phone_shared(&self, phone: u64) -> bool {
        self.shared_phones.contains(&phone)
    }

    fn id_of(&self, slot: &Slot) -> &str {
        self.names.get(slot.name as usize).map_or("", |(id, _)| id)
    }

    fn login_of(&self, slot: &Slot) -> Option<&str> {
        self.names
            .get(slot.name as usize)
            .and_then(|(_, l)| l.as_deref())
    }

    fn slot_of(&self, row: u64) -> Option<&Slot> {
        let s = *self.rows.get((row - 1) as usize)?;
        (s != NO_SLOT).then(|| &self.slots[s as usize])
    }
}

/// Logins and emails compare without case, as Okta compares them, and
/// not only ASCII case (`JOSÉ` is `josé`).
fn same_text(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

/// What a resolve of one login found.
async fn resolve(client: &Client, user: &UserRef) -> Result<(String, String, String), Unresolved> {
    let not_found = |detail: String| Unresolved {
        outcome: Outcome::UserNotFound,
        detail,
        error: None,
    };
    let failed = |e: OktaError| Unresolved {
        outcome: if e.is_not_found() {
            Outcome::UserNotFound
        } else {
            Outcome::Failed
        },
        detail: "could not look the user up; nothing changed".into(),
        error: Some(e),
    };
    let found = |u: crate::okta::wire::User| (u.id, u.profile.login, u.status);
    let (name, by_email) = match user {
        UserRef::Id(id) => return Ok((id.clone(), String::new(), String::new())),
        UserRef::Login(l) => (l.as_str(), false),
        UserRef::Email(e) => (e.as_str(), true),
    };
    // Logins with `/` or `?` cannot be fetched by login (docs/okta-behaviour.md,
    // U1): only an exact search finds them.
    if !name.contains(['/', '?']) {
        let got = client.get_user(name).await.map_err(failed)?;
        match got.value {
            Some(u) if same_text(&u.profile.login, name) => return Ok(found(u)),
            Some(u) if !by_email => {
                return Err(not_found(format!(
                    "Okta matched {name:?} to the user with login {:?} by short name; use the full login or the user id",
                    u.profile.login
                )));
            }
            _ => {}
        }
    }
    let by_login = client.search_users("login", name).await.map_err(failed)?;
    if let Some(u) = by_login
        .value
        .into_iter()
        .find(|u| same_text(&u.profile.login, name))
    {
        return Ok(found(u));
    }
    if by_email {
        let mut matches = client
            .search_users("email", name)
            .await
            .map_err(failed)?
            .value;
        matches.retain(|u| {
            u.profile
                .email
                .as_deref()
                .is_some_and(|e| same_text(e, name))
        });
        return match matches.len() {
            0 => Err(not_found(format!(
                "no user has the login or email {name:?}"
            ))),
            1 => Ok(found(matches.remove(0))),
            n => {
                let logins: Vec<String> = matches
                    .iter()
                    .take(5)
                    .map(|u| u.profile.login.clone())
                    .collect();
                Err(Unresolved {
                    outcome: Outcome::Failed,
                    detail: format!(
                        "{n} users have the email {name:?} ({}); use the login or the user id",
                        logins.join(", ")
                    ),
                    error: None,
                })
            }
        };
    }
    Err(not_found(format!("no user has the login {name:?}")))
}

/// First pass: validates every row, resolves logins (read-only GETs) and
/// builds the index. Returns the index and the number of rows.
async fn index_pass(
    cfg: &RunConfig,
    client: &Arc<Client>,
    stop: &Arc<AtomicBool>,
    fatal: &std::sync::Mutex<Option<OktaError>>,
) -> Result<(Index, u64), InputError> {
    type Resolved = (u64, Phone, Result<(String, String, String), Unresolved>);
    let (mut rx, user_kind) = spawn_reader_with_kind(&cfg.input_path, &cfg.input)?;
    let mut index = Index::default();
    let mut total = 0u64;
    // Results are small and drained after every row read, so this channel
    // stays short; the work channel is the bounded one.
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Resolved>();
    let (todo_tx, mut todo_rx) = mpsc::channel::<(u64, UserRef, Phone)>(256);
    let resolver = {
        let client = client.clone();
        let stop = stop.clone();
        let concurrency = cfg.concurrency;
        tokio::spawn(async move {
            let todo = futures::stream::poll_fn(move |cx| todo_rx.poll_recv(cx));
            let mut results = todo
                .map(|(row, user, phone)| {
                    let client = client.clone();
                    let stop = stop.clone();
                    async move {
                        if stop.load(Ordering::SeqCst) {
                            let skipped = Unresolved {
                                outcome: Outcome::NotAttempted,
                                detail: "the run stopped before this row's user was looked up"
                                    .into(),
                                error: None,
                            };
                            return (row, phone, Err(skipped));
                        }
                        let r = resolve(&client, &user).await;
                        (row, phone, r)
                    }
                })
                .buffer_unordered(concurrency);
            while let Some(item) = results.next().await {
                if res_tx.send(item).is_err() {
                    break;
                }
            }
        })
    };
    while let Some(item) = rx.recv().await {
        let row = item?;
        total = row.row;
        index.reserve_row(row.row);
        index.set_check(row.row, row_check(&row));
        // Rows left out are not looked up: a canary of 20 rows must not
        // cost a GET for each of the file's other rows.
        if !cfg.selection.selects(row.row, &row.user_raw) {
            continue;
        }
        // A row with a bad number still names its user: another row for
        // that user must then end in conflict, not go ahead on its own.
        let named = match &row.parsed {
            Ok(req) => Some((req.user.clone(), req.phone.clone())),
            Err(_) => crate::input::parse_user(&row.user_raw, user_kind)
                .ok()
                .map(|u| (u, unusable_phone())),
        };
        if let Some((user, phone)) = named {
            match user {
                UserRef::Id(id) => {
                    index.add(row.row, hash_of(&id), &id, None, "", phone_key(&phone))
                }
                other => {
                    // The resolver only stops early if it panicked; the
                    // row is then reported as never looked up.
                    let _ = todo_tx.send((row.row, other, phone)).await;
                }
            }
        }
        while let Ok((row, phone, r)) = res_rx.try_recv() {
            record_resolved(&mut index, row, &phone, r, stop, fatal);
        }
    }
    drop(todo_tx);
    while let Some((row, phone, r)) = res_rx.recv().await {
        record_resolved(&mut index, row, &phone, r, stop, fatal);
    }
    let _ = resolver.await;
    index.finish();
    Ok((index, total))
}

fn record_resolved(
    index: &mut Index,
    row: u64,
    phone: &Phone,
    r: Result<(String, String, String), Unresolved>,
    stop: &AtomicBool,
    fatal: &std::sync::Mutex<Option<OktaError>>,
) {
    match r {
        Ok((id, login, status)) => {
            index.add(
                row,
                hash_of(&id),
                &id,
                Some(&login),
                &status,
                phone_key(phone),
            );
        }
        Err(u) => {
            if let Some(e) = u.error.as_ref().filter(|e| e.is_fatal()) {
                stop.store(true, Ordering::SeqCst);
                let mut f = fatal.lock().unwrap_or_else(|e| e.into_inner());
                if f.is_none() {
                    *f = Some(e.clone());
                }
            }
            index.reserve_row(row);
            index.unresolved.insert(row, u);
        }
    }
}

/// What the second pass makes of a row before any worker sees it.
enum Dispatch {
    Done(RowResult),
    Work(Target),
}

fn dispatch(
    row: InputRow,
    index: &Index,
    ft: &str,
    stopped: bool,
    selection: &Selection,
) -> Dispatch {
    let mut res = RowResult::new(row.row, &row.user_raw, ft, Outcome::Invalid);
    if !selection.selects(row.row, &row.user_raw) {
        res.outcome = Outcome::NotSelected;
        res.detail = format!("not in the selection ({})", selection.describe());
        if let Ok(req) = &row.parsed {
            res.new_phone.clone_from(&req.phone.e164);
        }
        return Dispatch::Done(res);
    }
    let req: RowRequest = match row.parsed {
        Ok(req) => req,
        Err(invalid) => {
            res.detail = format!("line {}: {invalid}", row.line);
            return Dispatch::Done(res);
        }
    };
    res.new_phone.clone_from(&req.phone.e164);
    if let Some(u) = index.unresolved.get(&row.row) {
        res.outcome = u.outcome;
        res.detail.clone_from(&u.detail);
        if let Some(e) = &u.error {
            res.error = e.info();
            res.attempts = e.attempts;
        }
        if let UserRef::Login(l) | UserRef::Email(l) = &req.user {
            res.login.clone_from(l);
        }
        if stopped && u.error.as_ref().is_some_and(OktaError::is_fatal) {
            res.outcome = Outcome::NotAttempted;
        }
        return Dispatch::Done(res);
    }
    let Some(slot) = index.slot_of(row.row) else {
        // Only reachable when the resolve pass was cut short.
        res.outcome = Outcome::NotAttempted;
        res.detail = "the run stopped before this row's user was looked up".into();
        return Dispatch::Done(res);
    };
    res.user_id = index.id_of(slot).to_string();
    res.login = match (index.login_of(slot), &req.user) {
        (Some(l), _) => l.to_string(),
        (None, UserRef::Login(l)) => l.clone(),
        _ => String::new(),
    };
    res.user_status = index.status_name(slot.status).to_string();
    if slot.conflict {
        res.outcome = Outcome::Conflict;
        res.detail = format!(
            "this user is named more than once with different numbers (first on row {}); the user is not touched",
            slot.first_row
        );
        return Dispatch::Done(res);
    }
    if u64::from(slot.first_row) != row.row {
        res.outcome = Outcome::Duplicate;
        res.detail = format!("duplicate of row {}", slot.first_row);
        return Dispatch::Done(res);
    }
    if stopped {
        res.outcome = Outcome::NotAttempted;
        res.detail = "the run stopped before this row".into();
        return Dispatch::Done(res);
    }
    let mut warnings = req.warnings;
    if index.phone_shared(phone_key(&req.phone)) {
        warnings.push(
            "another user in this file is given the same new number: check for shifted rows".into(),
        );
    }
    Dispatch::Work(Target {
        row: row.row,
        user_raw: row.user_raw,
        user_id: res.user_id,
        login: res.login,
        user_status: res.user_status,
        phone: req.phone,
        old_phone: req.old_phone,
        warnings,
    })
}

/// What a resumed run takes over from the stopped one.
#[derive(Default)]
struct Resume {
    /// Rows already finished (by data row number - 1).
    finished: Vec<bool>,
    /// Rows the journal finished but the report missed (killed between).
    missing_lines: Vec<RowResult>,
    /// Rows stopped between their intent and their end.
    open: Vec<crate::journal::Intent>,
}

impl Resume {
    fn is_finished(&self, row: u64) -> bool {
        self.finished
            .get((row - 1) as usize)
            .copied()
            .unwrap_or(false)
    }

    fn unmark(&mut self, row: u64) {
        if let Some(f) = self.finished.get_mut((row - 1) as usize) {
            *f = false;
        }
    }

    fn mark(&mut self, row: u64) {
        let i = (row - 1) as usize;
        if self.finished.len() <= i {
            self.finished.resize(i + 1, false);
        }
        self.finished[i] = true;
    }
}

/// Checks what a run may do with its report, journal and lock, and for
/// `--resume` reads what the stopped run left.
fn prepare_files(cfg: &RunConfig, header: &RunHeader) -> Result<Option<Resume>, String> {
    let journal_path = journal::path_for(&cfg.report_path);
    if !cfg.resume {
        if journal_path.exists() {
            return Err(format!(
                "an earlier run left {}: continue it with `--resume --report {}` (same input and options), or choose another --report",
                journal_path.display(),
                cfg.report_path.display()
            ));
        }
        if cfg.report_path.exists() {
            return Err(format!(
                "the report {} exists already; reports are never overwritten: choose another --report",
                cfg.report_path.display()
            ));
        }
        return Ok(None);
    }
    if !cfg.mode.writes() {
        return Err("--resume is for apply; a plan is simply run again".into());
    }
    if !journal_path.exists() && !cfg.report_path.exists() {
        // Stopped before it wrote anything (or never started): a fresh
        // start is the resume. Cron jobs can always pass --resume.
        tracing::info!("nothing to resume for this report; starting the run");
        return Ok(None);
    }
    let st = journal::read(&journal_path)
        .map_err(|e| format!("--resume needs the journal {}: {e}", journal_path.display()))?;
    match &st.header {
        Some(h) if h == header => {}
        Some(h) => {
            let mut diffs = Vec::new();
            if h.input_hash != header.input_hash || h.input_len != header.input_len {
                diffs.push(format!(
                    "the input file differs from the one the run started with ({})",
                    h.input
                ));
            }
            if h.org_url != header.org_url {
                diffs.push(format!("the org was {}", h.org_url));
            }
            if h.factor_type != header.factor_type {
                diffs.push(format!("the factor type was {}", h.factor_type));
            }
            if h.options != header.options {
                diffs.push(format!(
                    "the options differ: the run used {}, this one {}",
                    h.options, header.options
                ));
            }
            if h.activate != header.activate {
                diffs.push(format!(
                    "the run used {}",
                    if h.activate {
                        "--activate"
                    } else {
                        "--send-code"
                    }
                ));
            }
            return Err(format!("cannot resume: {}", diffs.join("; ")));
        }
        None => {
            return Err(format!(
                "{} has no run header; it is not a journal",
                journal_path.display()
            ));
        }
    }
    let mut resume = Resume::default();
    if cfg.report_path.exists() {
        let mut rdr = csv::Reader::from_path(&cfg.report_path)
            .map_err(|e| format!("cannot read the report {}: {e}", cfg.report_path.display()))?;
        for rec in rdr.records().flatten() {
            let (Some(row), Some(outcome)) =
                (rec.get(0).and_then(|r| r.parse::<u64>().ok()), rec.get(8))
            else {
                continue;
            };
            // Rows a canary left out are still to do.
            if row > 0
                && outcome != Outcome::NotAttempted.as_str()
                && outcome != Outcome::NotSelected.as_str()
            {
                resume.mark(row);
            }
        }
    }
    for (row, done) in &st.done {
        if !resume.is_finished(*row) {
            resume.missing_lines.push(done.clone());
            resume.mark(*row);
        }
    }
    resume.open = st
        .open
        .into_values()
        .filter(|i| !resume.is_finished(i.row))
        .collect();
    // A user the run left without the factor gets another try: the new
    // number, else the old one (the resumed row's line replaces the old).
    for (row, done) in &st.done {
        if done.outcome == Outcome::FailedUnrestored
            && let Some(intent) = st.intents.get(row)
        {
            resume.unmark(*row);
            resume.open.push(intent.clone());
        }
    }
    Ok(Some(resume))
}

/// Runs `apply` or `plan`. Returns the exit code.
pub async fn run(cfg: RunConfig) -> u8 {
    let started = Instant::now();
    let command = if cfg.mode.writes() { "apply" } else { "plan" };
    let pacer = Arc::new(Pacer::new(
        cfg.rate_share,
        cfg.rate_per_minute,
        cfg.concurrency,
    ));
    let client = match Client::new(
        ClientConfig {
            org_url: cfg.org_url.clone(),
            credentials: cfg.credentials.clone(),
            timeout: cfg.timeout,
            extra_roots: cfg.extra_roots.clone(),
            max_attempts: 5,
            max_throttled: 20,
        },
        pacer.clone(),
        !cfg.mode.writes(),
    ) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprint_line(&format!("error: cannot set up the HTTP client: {e:#}"));
            return EXIT_USAGE;
        }
    };

    // Check the whole file before anything else, so a bad file stops the
    // run before the first request.
    if let Err(e) = InputReader::open(&cfg.input_path, &cfg.input) {
        eprint_line(&format!("error: {e}"));
        return EXIT_USAGE;
    }
    if let Some(msg) = summary_clash(&cfg) {
        eprint_line(&format!("error: {msg}"));
        return EXIT_USAGE;
    }
    let _lock = match RunLock::acquire(&cfg.report_path) {
        Ok(l) => l,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            if matches!(e, LockError::Held { .. }) {
                eprint_line(
                    "hint: wait for that run to end; a lock left by a process that is gone is removed automatically",
                );
            }
            return EXIT_USAGE;
        }
    };
    let header = match journal::fingerprint(&cfg.input_path) {
        Ok((input_len, input_hash)) => RunHeader {
            input: cfg.input_path.display().to_string(),
            input_len,
            input_hash,
            org_url: cfg.org_url.to_string(),
            factor_type: cfg.factor_type().as_str().to_string(),
            activate: cfg.mode.activate(),
            options: format!(
                "--default-region {:?} --user-column {:?} --phone-column {:?} --if-missing {} --also-call {} --remove-recovery {} --allow-unknown-ranges {} --update-profile {}",
                cfg.input.phone.default_region,
                cfg.input.user_column,
                cfg.input.phone_column,
                if cfg.if_missing_enroll {
                    "enroll"
                } else {
                    "skip"
                },
                cfg.also_call,
                cfg.remove_recovery,
                cfg.input.phone.allow_unknown_ranges,
                cfg.update_profile,
            ),
        },
        Err(e) => {
            eprint_line(&format!(
                "error: cannot read {}: {e}",
                cfg.input_path.display()
            ));
            return EXIT_USAGE;
        }
    };
    let mut resume = match prepare_files(&cfg, &header) {
        Ok(r) => r,
        Err(msg) => {
            eprint_line(&format!("error: {msg}"));
            return EXIT_USAGE;
        }
    };

    tracing::info!(
        command,
        org = %cfg.org_url,
        input = %cfg.input_path.display(),
        factor_type = %cfg.factor_type(),
        activate = cfg.mode.activate(),
        concurrency = cfg.concurrency,
        rate_share = cfg.rate_share,
        rate_cap = cfg.rate_per_minute.map(|r| r.get()),
        resume = cfg.resume,
        auth = %cfg.credentials.describe(),
        selection = %cfg.selection.describe(),
        max_failures = cfg.max_failures.map(|m| m.to_string()),
        update_profile = cfg.update_profile,
        "run starting"
    );

    // Ask before the lookups, which can take long for many logins.
    if let Mode::Apply { activate } = cfg.mode
        && resume.is_none()
        && !confirm(&cfg, activate)
    {
        eprint_line("aborted: nothing was changed");
        return EXIT_USAGE;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Listen from here on, so a signal during the lookups stops cleanly too.
    let interrupted = Arc::new(AtomicBool::new(false));
    let signals = watch_signals(stop.clone(), interrupted.clone(), cfg.report_path.clone());
    let fatal = Arc::new(std::sync::Mutex::new(None::<OktaError>));

    tracing::info!("first pass: checking every row and looking up logins (read-only)");
    let first_pass = Instant::now();
    let (index, total) = match index_pass(&cfg, &client, &stop, &fatal).await {
        Ok(x) => x,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    tracing::info!(
        rows = total,
        users = index.slots.len(),
        seconds = first_pass.elapsed().as_secs(),
        "first pass done"
    );

    let journal = if cfg.mode.writes() {
        let path = journal::path_for(&cfg.report_path);
        let opened = if resume.is_some() {
            Journal::reopen(&path, &header)
        } else {
            Journal::create(&path, &header)
        };
        match opened {
            Ok(j) => Some(j),
            Err(e) => {
                eprint_line(&format!(
                    "error: cannot write the journal {}: {e}",
                    path.display()
                ));
                return EXIT_USAGE;
            }
        }
    } else {
        None
    };
    // The journal exists before the report, so a report never lacks its
    // journal.
    let opened = if resume.is_some() && cfg.report_path.exists() {
        ReportWriter::append(&cfg.report_path)
    } else {
        ReportWriter::create(&cfg.report_path)
    };
    let mut report = match opened {
        Ok(r) => r,
        Err(e) => {
            eprint_line(&format!(
                "error: cannot open the report {}: {e}",
                cfg.report_path.display()
            ));
            return EXIT_USAGE;
        }
    };
    if !cfg.quiet {
        eprint_line(&format!("report: {}", cfg.report_path.display()));
    }

    let settings = JobSettings {
        mode: cfg.mode,
        factor_type: cfg.factor_type(),
        if_missing_enroll: cfg.if_missing_enroll,
        remove_recovery: cfg.remove_recovery,
        also_call: cfg.also_call,
    };
    let (res_tx, mut res_rx) = mpsc::channel::<RowResult>(1024);

    // A resume first finishes what the stopped run left half done.
    if let (Some(resume), Some(journal)) = (resume.as_mut(), journal.as_ref()) {
        for r in std::mem::take(&mut resume.missing_lines) {
            if let Err(e) = report.write(&r) {
                eprint_line(&format!("error: writing the report failed: {e}"));
                return 4;
            }
        }
        for intent in std::mem::take(&mut resume.open) {
            if let Some(out) = job::recover(&client, &settings, journal, &intent).await {
                tracing::info!(row = intent.row, outcome = %out.result.outcome, "resume: interrupted row settled");
                resume.mark(intent.row);
                let _ = res_tx.send(out.result).await;
            }
        }
    }
    let resume = Arc::new(resume.unwrap_or_default());

    let (work_tx, work_rx) = mpsc::channel::<Target>(cfg.concurrency * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    // 403 E0000006 before any row succeeded means the token has no admin
    // role for these users at all: stop rather than fail every row.
    let any_success = Arc::new(AtomicBool::new(false));

    let breaker = Arc::new(std::sync::Mutex::new(Breaker::new(cfg.max_failures)));
    let update_profile = cfg.update_profile;
    let safety = Arc::new(job::Safety {
        journal: journal.clone(),
        gate: job::WriteGate::default(),
        stop: stop.clone(),
    });
    let mut workers = Vec::new();
    for _ in 0..cfg.concurrency {
        let breaker = breaker.clone();
        let work_rx = work_rx.clone();
        let res_tx = res_tx.clone();
        let client = client.clone();
        let stop = stop.clone();
        let fatal = fatal.clone();
        let any_success = any_success.clone();
        let safety = safety.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let next = work_rx.lock().await.recv().await;
                let Some(target) = next else { break };
                let result = if stop.load(Ordering::SeqCst) {
                    let mut r = RowResult::new(
                        target.row,
                        &target.user_raw,
                        settings.factor_type.as_str(),
                        Outcome::NotAttempted,
                    );
                    r.user_id = target.user_id;
                    r.login = target.login;
                    r.new_phone = target.phone.e164;
                    r.detail = "the run stopped before this row".into();
                    r
                } else {
                    let mut out = job::run(&client, &settings, &safety, target).await;
                    // No access token: nothing was sent for this row, so it
                    // was not attempted rather than failed.
                    if out.result.outcome == Outcome::Failed
                        && out
                            .fatal
                            .as_ref()
                            .is_some_and(|e| e.kind == crate::okta::client::FailureKind::Auth)
                    {
                        out.result.outcome = Outcome::NotAttempted;
                        out.result.detail =
                            "not attempted: no access token (the token request was refused)".into();
                    }
                    if update_profile {
                        set_profile_phone(&client, settings.mode, &mut out.result).await;
                    }
                    let tripped = breaker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(&out.result);
                    if tripped {
                        stop.store(true, Ordering::SeqCst);
                    }
                    let first_denied = !any_success.load(Ordering::SeqCst)
                        && out.result.error.http_status == Some(403)
                        && out.result.error.error_code == "E0000006";
                    let stopping = out.fatal.clone().or_else(|| {
                        first_denied.then(|| {
                            let mut e = OktaError::local(out.result.error.error_summary.clone());
                            e.kind = crate::okta::client::FailureKind::Status;
                            e.status = Some(403);
                            e.request_id.clone_from(&out.result.error.request_id);
                            e.body = Some(crate::okta::wire::ErrorBody {
                                error_code: "E0000006".into(),
                                error_summary: out.result.error.error_summary.clone(),
                                ..Default::default()
                            });
                            e
                        })
                    });
                    if let Some(e) = stopping {
                        stop.store(true, Ordering::SeqCst);
                        let mut f = fatal.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            *f = Some(e);
                        }
                    } else if out.result.outcome.exit_code() == 0 {
                        any_success.store(true, Ordering::SeqCst);
                    }
                    out.result
                };
                if res_tx.send(result).await.is_err() {
                    break;
                }
            }
        }));
    }

    let dispatcher = {
        let stop = stop.clone();
        let res_tx = res_tx.clone();
        let ft = cfg.factor_type().as_str();
        let rx = spawn_reader(&cfg.input_path, &cfg.input);
        let resume = resume.clone();
        let selection = cfg.selection.clone();
        tokio::spawn(async move {
            let mut rx = rx?;
            // The file is read twice; a file edited or replaced in between
            // would pair users with other rows' numbers. Every row is
            // compared with its first read, and the run stops at the first
            // difference.
            let mut changed: Option<String> = None;
            let mut seen = 0u64;
            while let Some(item) = rx.recv().await {
                let row = item?;
                seen = row.row;
                if changed.is_none() && index.check_of(row.row) != Some(row_check(&row)) {
                    stop.store(true, Ordering::SeqCst);
                    changed = Some(format!(
                        "the input file changed while the run was using it (row {} differs from the first read); the run stopped there",
                        row.row
                    ));
                }
                if resume.is_finished(row.row) {
                    continue;
                }
                if changed.is_some() {
                    let mut r = RowResult::new(row.row, &row.user_raw, ft, Outcome::NotAttempted);
                    r.detail =
                        "the input file changed during the run; this row was not attempted".into();
                    if res_tx.send(r).await.is_err() {
                        break;
                    }
                    continue;
                }
                match dispatch(row, &index, ft, stop.load(Ordering::SeqCst), &selection) {
                    Dispatch::Done(r) => {
                        if res_tx.send(r).await.is_err() {
                            break;
                        }
                    }
                    Dispatch::Work(t) => {
                        if work_tx.send(t).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // A shorter file: the rows it lost still get their line.
            let first_read = index.checks.len() as u64;
            if seen < first_read {
                changed.get_or_insert_with(|| {
                    format!("the input file changed while the run was using it (it now ends at row {seen}, not {first_read})")
                });
                for row in seen + 1..=first_read {
                    if resume.is_finished(row) {
                        continue;
                    }
                    let mut r = RowResult::new(row, "", ft, Outcome::NotAttempted);
                    r.detail =
                        "the input file changed during the run; this row was not attempted".into();
                    if res_tx.send(r).await.is_err() {
                        break;
                    }
                }
            }
            Ok::<Option<String>, InputError>(changed)
        })
    };
    drop(res_tx);

    let mut summary = Summary::new(command);
    summary.report = Some(cfg.report_path.display().to_string());
    let mut progress = Progress::new(total, cfg.quiet);
    progress.set_plain_interval(cfg.progress_interval);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut plan_out = (!cfg.mode.writes()).then(|| PlanOut::new(cfg.plan_format));
    let mut report_error = None;
    loop {
        tokio::select! {
            r = res_rx.recv() => {
                let Some(r) = r else { break };
                let written = report.write(&r).and_then(|()| match (&journal, r.intent) {
                    (Some(j), true) => j.done(&r),
                    _ => Ok(()),
                });
                if let Err(e) = written
                    && report_error.is_none()
                {
                    report_error = Some(e);
                    stop.store(true, Ordering::SeqCst);
                }
                if let Some(p) = plan_out.as_mut() {
                    p.row(&r);
                }
                log_row(&r);
                summary.count(&r);
                progress.update(&summary, &pacer.status(), pacer.requests());
            }
            _ = tick.tick() => {
                progress.update(&summary, &pacer.status(), pacer.requests());
            }
        };
    }
    progress.finish();
    signals.abort();
    if let Some(p) = plan_out.take() {
        p.finish(&summary);
    }
    summary.interrupted = interrupted.load(Ordering::SeqCst);
    for w in workers {
        let _ = w.await;
    }
    let input_failed = match dispatcher.await {
        Ok(Ok(changed)) => changed,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Err(e) = report.finish() {
        report_error.get_or_insert(e);
    }
    // One line per row, in input order: the last line of a row wins (a
    // resume re-does rows an earlier run reported not_attempted).
    if report_error.is_none() {
        match crate::report::compact(&cfg.report_path) {
            Ok(full) if cfg.resume => {
                let (requests, throttled) = (summary.requests, summary.throttled);
                let interrupted = summary.interrupted;
                summary = full;
                summary.command = command.into();
                summary.report = Some(cfg.report_path.display().to_string());
                summary.requests = requests;
                summary.throttled = throttled;
                summary.interrupted = interrupted;
            }
            Ok(_) => {}
            Err(e) => report_error = Some(e),
        }
    }

    summary.requests = pacer.requests();
    summary.throttled = pacer.throttled();
    summary.wall_time_ms = started.elapsed().as_millis() as u64;
    let fatal_err = fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let breaker_stop = breaker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .tripped
        .clone();
    if let Some(reason) = &breaker_stop {
        summary.stopped_by = Some(reason.clone());
        summary.exit_code = crate::outcome::combine_exit(summary.exit_code, 4);
    }
    if let Some(e) = &fatal_err {
        summary.stopped_by = Some(e.to_string());
        // A run stopped by Okta's answer is an incomplete run, even when
        // every row had already started.
        summary.exit_code = crate::outcome::combine_exit(summary.exit_code, 4);
    }
    if summary.interrupted {
        summary.exit_code = crate::outcome::combine_exit(summary.exit_code, 4);
    }
    if report_error.is_some() || input_failed.is_some() {
        summary.exit_code = crate::outcome::combine_exit(summary.exit_code, 4);
    }
    if !cfg.quiet || summary.exit_code != 0 {
        eprint_line(&summary.render(started.elapsed()));
    }
    if let Some(e) = &fatal_err {
        eprint_line(&format!("error: the run was stopped: {e}"));
        if let Some(h) = e.hint() {
            eprint_line(&format!("hint: {h}"));
        }
    }
    if let Some(reason) = &breaker_stop {
        tracing::error!("the run was stopped: {reason}");
        eprint_line(&format!("error: the run was stopped: {reason}"));
        eprint_line(
            "hint: fix the cause (the common error above), then `apply --resume --report` with the same report does the rest",
        );
    }
    if let Some(e) = &report_error {
        eprint_line(&format!("error: writing the report or journal failed: {e}"));
    }
    if let Some(e) = &input_failed {
        eprint_line(&format!("error: reading the input failed midway: {e}"));
    }
    if cfg.mode.writes() && summary.get(Outcome::NotAttempted) > 0 {
        eprint_line(&format!(
            "to finish the rows not attempted, run the same command again with --resume:\n  okta-phone-migrate apply --resume --report {} --input {} {} (and the other options this run used)",
            cfg.report_path.display(),
            cfg.input_path.display(),
            if cfg.mode.activate() {
                "--activate"
            } else {
                "--send-code"
            }
        ));
    }
    if let Some(path) = &cfg.summary_json
        && let Err(e) = summary.write_json(path)
    {
        eprint_line(&format!("error: cannot write {}: {e}", path.display()));
    }
    summary.exit_code
}

/// First Ctrl-C or SIGTERM: no new rows start, rows in flight finish.
/// Second: exit at once; the journal keeps a row caught mid-change safe.
fn watch_signals(
    stop: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    report: std::path::PathBuf,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term = terminate_signal();
        let mut count = 0u32;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        // No Ctrl-C handler on this platform: wait for SIGTERM only.
                        next_term(&mut term).await;
                    }
                }
                _ = next_term(&mut term) => {}
            }
            count += 1;
            if count == 1 {
                stop.store(true, Ordering::SeqCst);
                interrupted.store(true, Ordering::SeqCst);
                eprint_line(
                    "interrupted: finishing the rows in flight (never between delete and enroll); interrupt again to exit at once",
                );
            } else {
                eprint_line(&format!(
                    "second interrupt: exiting now; the journal keeps any row in flight safe: `--resume --report {}` completes it",
                    report.display()
                ));
                std::process::exit(4);
            }
        }
    })
}

#[cfg(unix)]
type TermSignal = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type TermSignal = Option<()>;

#[cfg(unix)]
fn terminate_signal() -> TermSignal {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "SIGTERM cannot be caught; it will end the run without a clean stop");
            None
        }
    }
}

#[cfg(not(unix))]
fn terminate_signal() -> TermSignal {
    None
}

/// The next SIGTERM; never, where there is none.
async fn next_term(term: &mut TermSignal) {
    #[cfg(unix)]
    if let Some(s) = term {
        s.recv().await;
        return;
    }
    let _ = term;
    std::future::pending::<()>().await
}

/// `--summary-json` must not land on one of the run's own files: it
/// would replace the input, the report, the journal or the lock.
fn summary_clash(cfg: &RunConfig) -> Option<String> {
    let summary = std::path::absolute(cfg.summary_json.as_ref()?).ok()?;
    let own = [
        ("input", cfg.input_path.clone()),
        ("report", cfg.report_path.clone()),
        ("journal", journal::path_for(&cfg.report_path)),
        ("lock", crate::lock::path_for(&cfg.report_path)),
    ];
    own.into_iter()
        .find(|(_, p)| std::path::absolute(p).is_ok_and(|p| p == summary))
        .map(|(what, p)| {
            format!(
                "--summary-json {} is the run's {what} file; choose another path",
                p.display()
            )
        })
}

/// Asks before writing, on a terminal only.
fn confirm(cfg: &RunConfig, activate: bool) -> bool {
    if cfg.quiet && !std::io::stdin().is_terminal() {
        return true;
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() || cfg.assume_yes {
        return true;
    }
    // An offline count: the rows are read again, quickly, without Okta.
    let rows = InputReader::open(&cfg.input_path, &cfg.input)
        .map(|mut r| std::iter::from_fn(|| r.next_row()).count())
        .unwrap_or(0);
    eprint_line(&format!(
        "About to change the {} factor of up to {rows} users in {} ({}).\nMode: {}\nReport: {}",
        cfg.factor_type(),
        cfg.org_url,
        cfg.selection.describe(),
        if activate {
            "--activate: new factors are ACTIVE at once; Okta sends no SMS or call"
        } else {
            "--send-code: new factors stay PENDING_ACTIVATION and Okta texts or calls every user a code; they cannot use this factor until they enter it"
        },
        cfg.report_path.display()
    ));
    eprint!("Type 'yes' to continue: ");
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    answer.trim().eq_ignore_ascii_case("yes")
}

/// Refused changes, each put back, before any success: then the run stops.
const RESTORES_BEFORE_STOP: u32 = 3;

/// Okta refused the row's number itself (invalid, not allowed for the org's
/// countries, bad extension), which says nothing about the other rows.
fn number_refused(r: &RowResult) -> bool {
    matches!(
        r.error.error_code.as_str(),
        "E0000098" | "E0000099" | "E0000121"
    ) || r
        .error
        .error_causes
        .iter()
        .any(|c| c.to_ascii_lowercase().contains("phone number"))
}

/// The circuit breaker: counts attempted and failed rows, and trips when
/// `--max-failures` is reached, naming the most common error.
struct Breaker {
    limit: Option<FailureLimit>,
    succeeded: bool,
    restores_before_success: u32,
    attempted: u64,
    failed: u64,
    errors: HashMap<String, u64>,
    tripped: Option<String>,
}

impl Breaker {
    fn new(limit: Option<FailureLimit>) -> Breaker {
        Breaker {
            limit,
            succeeded: false,
            restores_before_success: 0,
            attempted: 0,
            failed: 0,
            errors: HashMap::new(),
            tripped: None,
        }
    }

    /// Counts a row the job worked on; true when this row trips it.
    fn record(&mut self, r: &RowResult) -> bool {
        // Always on, whatever --max-failures says: a user left without the
        // factor stops the run, and so do the first changes all being
        // refused after their delete (a refusal that would hit every user).
        match r.outcome {
            Outcome::Updated | Outcome::Enrolled => self.succeeded = true,
            // A refused number is that row's own problem, not the org's.
            Outcome::FailedRestored if !self.succeeded && !number_refused(r) => {
                self.restores_before_success += 1
            }
            _ => {}
        }
        if self.tripped.is_none() {
            let cause = || {
                phone_free(&format!("{} {}", r.error.error_code, r.error.error_summary))
                    .trim()
                    .to_string()
            };
            if r.outcome == Outcome::FailedUnrestored {
                self.tripped = Some(format!(
                    "row {} left its user without the factor ({}); stopping so that no other user is put at risk",
                    r.row,
                    cause()
                ));
                return true;
            }
            if self.restores_before_success >= RESTORES_BEFORE_STOP {
                self.tripped = Some(format!(
                    "the first {RESTORES_BEFORE_STOP} changes were all refused after the delete and put back ({}); this looks org-wide (policy, role or SMS settings)",
                    cause()
                ));
                return true;
            }
        }
        let Some(limit) = self.limit else {
            return false;
        };
        self.attempted += 1;
        // A failure of the change itself; a missing user or a precondition
        // that no longer holds is about the data, not a sign that
        // something is wrong with every row.
        if matches!(
            r.outcome,
            Outcome::Failed | Outcome::FailedRestored | Outcome::FailedUnrestored
        ) {
            self.failed += 1;
            let key = match r.error.http_status {
                Some(status) => format!(
                    "HTTP {status} {} {}",
                    r.error.error_code, r.error.error_summary
                ),
                None if !r.error.error_summary.is_empty() => r.error.error_summary.clone(),
                None => r.detail.clone(),
            };
            *self.errors.entry(key.trim().to_string()).or_default() += 1;
        }
        if self.tripped.is_none() && limit.tripped(self.failed, self.attempted) {
            let (common, n) = self
                .errors
                .iter()
                .max_by_key(|(k, n)| (**n, std::cmp::Reverse((*k).clone())))
                .map(|(k, n)| (k.clone(), *n))
                .unwrap_or_default();
            self.tripped = Some(format!(
                "--max-failures {limit}: {} of {} attempted rows failed; most common error ({n} rows): {}",
                self.failed,
                self.attempted,
                phone_free(&common)
            ));
            return true;
        }
        false
    }
}

/// Okta error texts do not carry numbers, but a row detail might: mask
/// anything that looks like one before it reaches the console.
fn phone_free(s: &str) -> String {
    crate::logging::scrub(s)
}

/// Sets `profile.mobilePhone` after the factor changed (`--update-profile`);
/// a failure is noted on the row, whose outcome stays that of the factor.
async fn set_profile_phone(client: &Client, mode: Mode, r: &mut RowResult) {
    let changed = matches!(
        r.outcome,
        Outcome::Updated | Outcome::Enrolled | Outcome::Unchanged
    );
    if !mode.writes() {
        if matches!(r.outcome, Outcome::WouldUpdate | Outcome::WouldEnroll) {
            r.note("would also set profile.mobilePhone");
        }
        return;
    }
    if !changed || r.user_id.is_empty() || r.new_phone.is_empty() {
        return;
    }
    match client.set_mobile_phone(&r.user_id, &r.new_phone).await {
        Ok(reply) => {
            r.attempts += reply.attempts;
            r.note("profile.mobilePhone set to the new number");
        }
        Err(e) => {
            r.attempts += e.attempts;
            tracing::warn!(row = r.row, error = %e, "profile.mobilePhone could not be set; the factor change stands");
            r.note(format!(
                "profile.mobilePhone NOT set ({e}); the factor change stands"
            ));
        }
    }
}

/// `plan`'s stdout: a table for people or JSON lines for programs.
struct PlanOut {
    format: PlanFormat,
    header_done: bool,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl PlanOut {
    fn new(format: PlanFormat) -> PlanOut {
        PlanOut {
            format,
            header_done: false,
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    fn row(&mut self, r: &RowResult) {
        use std::io::Write as _;
        let line = match self.format {
            PlanFormat::Text => {
                if !self.header_done {
                    self.header_done = true;
                    let _ = writeln!(
                        self.out,
                        "{:>6}  {:<14}  {:<32}  {:<28}  detail",
                        "row", "outcome", "user", "old -> new"
                    );
                }
                plan_line(r)
            }
            PlanFormat::Json => serde_json::json!({
                "type": "row",
                "row": r.row,
                "user": r.user,
                "user_id": r.user_id,
                "login": r.login,
                "outcome": r.outcome.as_str(),
                "old_phone": masked_or_empty(&r.old_phone),
                "new_phone": masked_or_empty(&r.new_phone),
                "detail": r.detail,
                "error_code": r.error.error_code,
            })
            .to_string(),
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    fn finish(mut self, summary: &Summary) {
        use std::io::Write as _;
        let counts: Vec<(&str, u64)> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str(), summary.get(*o)))
            .filter(|(_, n)| *n > 0)
            .collect();
        match self.format {
            PlanFormat::Text => {
                let _ = writeln!(self.out, "\n{} rows:", summary.rows);
                for (o, n) in &counts {
                    let _ = writeln!(self.out, "  {o:<16} {n:>8}");
                }
            }
            PlanFormat::Json => {
                let map: serde_json::Map<String, serde_json::Value> = counts
                    .iter()
                    .map(|(o, n)| ((*o).to_string(), serde_json::json!(n)))
                    .collect();
                let _ = writeln!(
                    self.out,
                    "{}",
                    serde_json::json!({"type": "summary", "rows": summary.rows, "counts": map})
                );
            }
        }
        let _ = self.out.flush();
    }
}

fn masked_or_empty(n: &str) -> String {
    if n.is_empty() {
        String::new()
    } else {
        phone::mask(n)
    }
}

/// `old -> new`, masked for stdout and logs; `None` when neither is known.
fn masked_change(r: &RowResult) -> Option<String> {
    if r.old_phone.is_empty() && r.new_phone.is_empty() {
        return None;
    }
    let show = |n: &str| {
        if n.is_empty() {
            "-".to_string()
        } else {
            phone::mask(n)
        }
    };
    Some(format!("{} -> {}", show(&r.old_phone), show(&r.new_phone)))
}

fn plan_line(r: &RowResult) -> String {
    format!(
        "{:>6}  {:<14}  {:<32}  {:<28}  {}",
        r.row,
        r.outcome.as_str(),
        r.user,
        masked_change(r).unwrap_or_default(),
        r.detail
    )
}

fn log_row(r: &RowResult) {
    if r.outcome.exit_code() == 0 || r.outcome == Outcome::NotAttempted {
        tracing::debug!(row = r.row, outcome = %r.outcome, "row done");
        return;
    }
    // One line per failed row: what, why, and what Okta Support needs.
    let mut line = format!("row {} {}", r.row, r.outcome);
    if !r.user_id.is_empty() {
        line.push_str(&format!(" user {}", r.user_id));
    }
    if let Some(change) = masked_change(r) {
        line.push_str(&format!(" ({change})"));
    }
    line.push_str(": ");
    line.push_str(&r.detail);
    if let Some(status) = r.error.http_status {
        line.push_str(&format!(" [HTTP {status} {}", r.error.error_code));
        if !r.error.request_id.is_empty() {
            line.push_str(&format!(", request id {}", r.error.request_id));
        }
        line.push(']');
    } else if !r.error.error_summary.is_empty() {
        // No answer at all: say why (a refused certificate, a timeout).
        line.push_str(&format!(" [{}]", r.error.error_summary));
    }
    if r.outcome == Outcome::FailedUnrestored {
        tracing::error!("{line}");
    } else {
        tracing::warn!("{line}");
    }
}

/// `validate`: the CSV offline. Returns the exit code.
pub async fn validate(input_path: &Path, opts: &InputOptions, quiet: bool) -> u8 {
    let (mut rx, user_kind) = match spawn_reader_with_kind(input_path, opts) {
        Ok(x) => x,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    // First pass: index by the user as written (logins case-insensitively).
    let mut index = Index::default();
    let mut total = 0;
    while let Some(item) = rx.recv().await {
        let row = match item {
            Ok(r) => r,
            Err(e) => {
                eprint_line(&format!("error: {e}"));
                return EXIT_USAGE;
            }
        };
        total = row.row;
        index.reserve_row(row.row);
        let named = match &row.parsed {
            Ok(req) => Some((req.user.clone(), req.phone.clone())),
            Err(_) => crate::input::parse_user(&row.user_raw, user_kind)
                .ok()
                .map(|u| (u, unusable_phone())),
        };
        if let Some((user, phone)) = named {
            let key = match &user {
                UserRef::Id(id) => hash_of(id),
                other => hash_of(&other.as_str().to_lowercase()),
            };
            index.add(row.row, key, "", None, "", phone_key(&phone));
        }
    }
    index.finish();
    let mut rx = match spawn_reader(input_path, opts) {
        Ok(rx) => rx,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    let mut summary = Summary::new("validate");
    while let Some(Ok(row)) = rx.recv().await {
        let r = match dispatch(
            row,
            &index,
            opts.factor_type.as_str(),
            false,
            &Selection::default(),
        ) {
            Dispatch::Done(r) => r,
            Dispatch::Work(t) => {
                let mut r = RowResult::new(t.row, &t.user_raw, "", Outcome::Unchanged);
                r.detail = t.warnings.join("; ");
                r
            }
        };
        if r.outcome != Outcome::Unchanged {
            println!("row {}: {}: {}", r.row, r.outcome, r.detail);
        } else if !r.detail.is_empty() && !quiet {
            println!("row {}: ok: {}", r.row, r.detail);
        }
        summary.count(&r);
    }
    let bad = summary.get(Outcome::Invalid) + summary.get(Outcome::Conflict);
    eprint_line(&format!(
        "{total} rows: {} ready, {} invalid, {} duplicate, {} conflict",
        summary.get(Outcome::Unchanged),
        summary.get(Outcome::Invalid),
        summary.get(Outcome::Duplicate),
        summary.get(Outcome::Conflict)
    ));
    u8::from(bad > 0)
}
