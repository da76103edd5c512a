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

use crate::config::{Mode, RunConfig};
use crate::input::{InputError, InputOptions, InputReader, InputRow, RowRequest, UserRef};
use crate::job::{self, JobSettings, Target};
use crate::okta::client::{Client, ClientConfig, OktaError};
use crate::outcome::{Outcome, RowResult};
use crate::pacer::Pacer;
use crate::phone::{self, Phone};
use crate::progress::{Progress, eprint_line};
use crate::report::{ReportWriter, Summary};

/// Exit code for usage, configuration and unreadable input.
pub const EXIT_USAGE: u8 = 2;

/// Streams rows from a blocking reader thread.
fn spawn_reader(
    path: &Path,
    opts: &InputOptions,
) -> Result<mpsc::Receiver<Result<InputRow, InputError>>, InputError> {
    let mut reader = InputReader::open(path, opts)?;
    let (tx, rx) = mpsc::channel(256);
    std::thread::spawn(move || {
        while let Some(item) = reader.next_row() {
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                break;
            }
        }
    });
    Ok(rx)
}

fn hash_of(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
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
    /// Okta user id (empty in `validate`, which resolves nothing).
    id: Box<str>,
    /// The user's login, when the resolve pass learned it.
    login: Option<Box<str>>,
    status: u8,
    first_row: u64,
    phone: u64,
    conflict: bool,
}

const NO_SLOT: u32 = u32::MAX;

/// The per-row index: a slot number per row (4 bytes) and a slot per user.
#[derive(Default)]
struct Index {
    rows: Vec<u32>,
    slots: Vec<Slot>,
    by_user: HashMap<u64, u32>,
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

    fn add(&mut self, row: u64, key: u64, id: &str, login: Option<&str>, status: &str, phone: u64) {
        self.reserve_row(row);
        let status = self.status_code(status);
        let slot = match self.by_user.get(&key) {
            Some(&s) => {
                let slot = &mut self.slots[s as usize];
                if slot.phone != phone {
                    slot.conflict = true;
                }
                slot.first_row = slot.first_row.min(row);
                s
            }
            None => {
                let s = self.slots.len() as u32;
                self.slots.push(Slot {
                    id: id.into(),
                    login: login.map(Into::into),
                    status,
                    first_row: row,
                    phone,
                    conflict: false,
                });
                self.by_user.insert(key, s);
                s
            }
        };
        self.rows[(row - 1) as usize] = slot;
    }

    fn slot_of(&self, row: u64) -> Option<&Slot> {
        let s = *self.rows.get((row - 1) as usize)?;
        (s != NO_SLOT).then(|| &self.slots[s as usize])
    }
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
    // Logins with `/` or `?` cannot be fetched by login (OKTA-API.md §7.5
    // U1): only an exact search finds them.
    if !name.contains(['/', '?']) {
        let got = client.get_user(name).await.map_err(failed)?;
        match got.value {
            Some(u) if u.profile.login.eq_ignore_ascii_case(name) => return Ok(found(u)),
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
        .find(|u| u.profile.login.eq_ignore_ascii_case(name))
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
                .is_some_and(|e| e.eq_ignore_ascii_case(name))
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
    let mut rx = spawn_reader(&cfg.input_path, &cfg.input)?;
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
        if let Ok(req) = &row.parsed {
            match &req.user {
                UserRef::Id(id) => {
                    index.add(row.row, hash_of(id), id, None, "", phone_key(&req.phone))
                }
                other => {
                    // The resolver only stops early if it panicked; the
                    // row is then reported as never looked up.
                    let _ = todo_tx
                        .send((row.row, other.clone(), req.phone.clone()))
                        .await;
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

fn dispatch(row: InputRow, index: &Index, ft: &str, stopped: bool) -> Dispatch {
    let mut res = RowResult::new(row.row, &row.user_raw, ft, Outcome::Invalid);
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
    res.user_id = slot.id.to_string();
    res.login = match (&slot.login, &req.user) {
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
    if slot.first_row != row.row {
        res.outcome = Outcome::Duplicate;
        res.detail = format!("duplicate of row {}", slot.first_row);
        return Dispatch::Done(res);
    }
    if stopped {
        res.outcome = Outcome::NotAttempted;
        res.detail = "the run stopped before this row".into();
        return Dispatch::Done(res);
    }
    Dispatch::Work(Target {
        row: row.row,
        user_raw: row.user_raw,
        user_id: res.user_id,
        login: res.login,
        user_status: res.user_status,
        phone: req.phone,
        old_phone: req.old_phone,
        warnings: req.warnings,
    })
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
            token: cfg.token.clone(),
            timeout: cfg.timeout,
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
    tracing::info!(
        command,
        org = %cfg.org_url,
        input = %cfg.input_path.display(),
        factor_type = %cfg.factor_type(),
        activate = cfg.mode.activate(),
        concurrency = cfg.concurrency,
        rate_share = cfg.rate_share,
        rate_cap = cfg.rate_per_minute.map(|r| r.get()),
        "run starting"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let fatal = Arc::new(std::sync::Mutex::new(None::<OktaError>));

    // Check the whole file before anything else, so a bad file stops the
    // run before the first request.
    if let Err(e) = InputReader::open(&cfg.input_path, &cfg.input) {
        eprint_line(&format!("error: {e}"));
        return EXIT_USAGE;
    }
    let (index, total) = match index_pass(&cfg, &client, &stop, &fatal).await {
        Ok(x) => x,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };

    if let Mode::Apply { activate } = cfg.mode
        && !confirm(&cfg, total, activate)
    {
        eprint_line("aborted: nothing was changed");
        return EXIT_USAGE;
    }

    let mut report = match ReportWriter::create(&cfg.report_path) {
        Ok(r) => r,
        Err(e) => {
            eprint_line(&format!(
                "error: cannot create the report {}: {e}",
                cfg.report_path.display()
            ));
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                eprint_line(
                    "hint: the report file exists already; choose another --report path (reports are never overwritten)",
                );
            }
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
    let (work_tx, work_rx) = mpsc::channel::<Target>(cfg.concurrency * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (res_tx, mut res_rx) = mpsc::channel::<RowResult>(1024);
    // 403 E0000006 before any row succeeded means the token has no admin
    // role for these users at all: stop rather than fail every row.
    let any_success = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for _ in 0..cfg.concurrency {
        let work_rx = work_rx.clone();
        let res_tx = res_tx.clone();
        let client = client.clone();
        let stop = stop.clone();
        let fatal = fatal.clone();
        let any_success = any_success.clone();
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
                    let out = job::run(&client, &settings, target).await;
                    let first_denied = !any_success.load(Ordering::SeqCst)
                        && out.result.error.http_status == Some(403)
                        && out.result.error.error_code == "E0000006";
                    if let Some(e) = out.fatal.clone().or_else(|| {
                        first_denied.then(|| OktaError {
                            kind: crate::okta::client::FailureKind::Status,
                            status: Some(403),
                            body: Some(crate::okta::wire::ErrorBody {
                                error_code: "E0000006".into(),
                                error_summary: out.result.error.error_summary.clone(),
                                ..Default::default()
                            }),
                            request_id: out.result.error.request_id.clone(),
                            message: String::new(),
                            attempts: 0,
                        })
                    }) {
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
        tokio::spawn(async move {
            let mut rx = match rx {
                Ok(rx) => rx,
                Err(e) => return Err(e),
            };
            while let Some(item) = rx.recv().await {
                let row = item?;
                match dispatch(row, &index, ft, stop.load(Ordering::SeqCst)) {
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
            Ok(())
        })
    };
    drop(res_tx);

    let mut summary = Summary::new(command);
    summary.report = Some(cfg.report_path.display().to_string());
    let mut progress = Progress::new(total, cfg.quiet);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut interrupts = 0u32;
    let plan_table = !cfg.mode.writes();
    let mut report_error = None;
    loop {
        tokio::select! {
            r = res_rx.recv() => {
                let Some(r) = r else { break };
                if let Err(e) = report.write(&r)
                    && report_error.is_none()
                {
                    report_error = Some(e);
                    stop.store(true, Ordering::SeqCst);
                }
                if plan_table {
                    println!("{}", plan_line(&r));
                }
                log_row(&r);
                summary.count(&r);
                progress.update(&summary, &pacer.status(), pacer.requests());
            }
            _ = tick.tick() => {
                progress.update(&summary, &pacer.status(), pacer.requests());
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts == 1 {
                    stop.store(true, Ordering::SeqCst);
                    summary.interrupted = true;
                    eprint_line("interrupted: finishing the rows in flight (never between delete and enroll); press Ctrl-C again to exit at once");
                } else {
                    eprint_line("second interrupt: exiting now; rows in flight may be incomplete, see the report");
                    std::process::exit(4);
                }
            }
        }
    }
    progress.finish();
    for w in workers {
        let _ = w.await;
    }
    let input_failed = match dispatcher.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    if let Err(e) = report.finish() {
        report_error.get_or_insert(e);
    }

    summary.requests = pacer.requests();
    summary.throttled = pacer.throttled();
    summary.wall_time_ms = started.elapsed().as_millis() as u64;
    let fatal_err = fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(e) = &fatal_err {
        summary.stopped_by = Some(e.to_string());
    }
    if !cfg.quiet || summary.exit_code != 0 {
        eprint_line(&summary.render(started.elapsed()));
    }
    if let Some(e) = &fatal_err {
        // A run stopped by Okta's answer is an incomplete run, even when
        // every row had already started.
        summary.exit_code = crate::outcome::combine_exit(summary.exit_code, 4);
        eprint_line(&format!("error: the run was stopped: {e}"));
        if let Some(h) = e.hint() {
            eprint_line(&format!("hint: {h}"));
        }
    }
    if summary.interrupted {
        eprint_line(
            "the run was interrupted; rows not started are reported not_attempted: run again with a new --report for those rows",
        );
    }
    if let Some(path) = &cfg.summary_json
        && let Err(e) = summary.write_json(path)
    {
        eprint_line(&format!("error: cannot write {}: {e}", path.display()));
    }
    if let Some(e) = report_error {
        eprint_line(&format!("error: writing the report failed: {e}"));
        return crate::outcome::combine_exit(summary.exit_code, 4);
    }
    if let Some(e) = input_failed {
        eprint_line(&format!("error: reading the input failed midway: {e}"));
        return crate::outcome::combine_exit(summary.exit_code, 4);
    }
    summary.exit_code
}

/// Asks before writing, on a terminal only.
fn confirm(cfg: &RunConfig, rows: u64, activate: bool) -> bool {
    if cfg.quiet && !std::io::stdin().is_terminal() {
        return true;
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() || cfg.assume_yes {
        return true;
    }
    eprint_line(&format!(
        "About to change the {} factor of up to {rows} users in {}.\nMode: {}\nReport: {}",
        cfg.factor_type(),
        cfg.org_url,
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

fn plan_line(r: &RowResult) -> String {
    let change = if r.old_phone.is_empty() && r.new_phone.is_empty() {
        String::new()
    } else {
        format!(
            "{} -> {}",
            if r.old_phone.is_empty() {
                "-".to_string()
            } else {
                phone::mask(&r.old_phone)
            },
            if r.new_phone.is_empty() {
                "-".to_string()
            } else {
                phone::mask(&r.new_phone)
            }
        )
    };
    format!(
        "{:>6}  {:<14}  {:<32}  {:<28}  {}",
        r.row,
        r.outcome.as_str(),
        r.user,
        change,
        r.detail
    )
}

fn log_row(r: &RowResult) {
    match r.outcome.exit_code() {
        0 => tracing::debug!(row = r.row, outcome = %r.outcome, "row done"),
        _ if r.outcome == Outcome::NotAttempted => {}
        _ => tracing::warn!(
            row = r.row,
            outcome = %r.outcome,
            user_id = %r.user_id,
            http_status = r.error.http_status,
            error_code = %r.error.error_code,
            request_id = %r.error.request_id,
            old = %phone::mask(&r.old_phone),
            new = %phone::mask(&r.new_phone),
            detail = %r.detail,
            "row not done"
        ),
    }
}

/// `validate`: the CSV offline. Returns the exit code.
pub async fn validate(input_path: &Path, opts: &InputOptions, quiet: bool) -> u8 {
    let mut rx = match spawn_reader(input_path, opts) {
        Ok(rx) => rx,
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
        if let Ok(req) = &row.parsed {
            let key = match &req.user {
                UserRef::Id(id) => hash_of(id),
                other => hash_of(&other.as_str().to_lowercase()),
            };
            index.add(row.row, key, "", None, "", phone_key(&req.phone));
        }
    }
    let mut rx = match spawn_reader(input_path, opts) {
        Ok(rx) => rx,
        Err(e) => {
            eprint_line(&format!("error: {e}"));
            return EXIT_USAGE;
        }
    };
    let mut summary = Summary::new("validate");
    while let Some(Ok(row)) = rx.recv().await {
        let r = match dispatch(row, &index, opts.factor_type.as_str(), false) {
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
