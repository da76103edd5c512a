//! One row's work: look at the user's factors, decide, and replace the
//! factor — list, delete, enroll — putting the old number back when the
//! enroll fails after the delete.
//!
//! The result is always a [`RowResult`]; a failure is data, never a panic
//! or a bare error string. The job never deletes without holding what it
//! needs to restore (the old factor's type, number, status).

use std::time::{Duration, Instant};

/// Tries of the restore enroll when it fails without a clear answer.
const RESTORE_ATTEMPTS: u32 = 3;

use crate::config::Mode;
use crate::journal::{Intent, Journal, OldFactor};
use crate::okta::FactorType;
use crate::okta::client::{Client, FailureKind, OktaError};
use crate::okta::wire::UserFactor;
use crate::outcome::{Outcome, RowResult};
use crate::phone::{self, Phone};

/// What the run asks of every row.
#[derive(Debug, Clone, Copy)]
pub struct JobSettings {
    pub mode: Mode,
    pub factor_type: FactorType,
    pub if_missing_enroll: bool,
    pub remove_recovery: bool,
    pub also_call: bool,
}

/// A row whose user is known by id, ready for the job.
#[derive(Debug, Clone)]
pub struct Target {
    pub row: u64,
    pub user_raw: String,
    pub user_id: String,
    pub login: String,
    pub user_status: String,
    pub phone: Phone,
    pub old_phone: Option<Phone>,
    pub warnings: Vec<String>,
}

/// The job's answer: the row's result, and an error that must stop the
/// whole run (bad token, org quota used up), if one happened.
#[derive(Debug)]
pub struct JobResult {
    pub result: RowResult,
    pub fatal: Option<OktaError>,
}

/// Until one row has shown that deletes and enrolls work in this org (the
/// token's role, the enrollment policy, SMS allowed at all), rows that
/// write go one at a time: a refusal that hits every user then costs one
/// restore instead of one per worker.
#[derive(Debug, Default)]
pub struct WriteGate {
    proven: std::sync::atomic::AtomicBool,
    single: tokio::sync::Mutex<()>,
}

impl WriteGate {
    async fn enter(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::sync::atomic::Ordering;
        if self.proven.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.single.lock().await;
        (!self.proven.load(Ordering::Acquire)).then_some(guard)
    }

    fn prove(&self) {
        self.proven
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// What protects the users while rows write: the journal (an intent on
/// disk before every delete) and the write gate.
#[derive(Default)]
pub struct Safety {
    pub journal: Option<Journal>,
    pub gate: WriteGate,
    /// Set when the run is stopping: a row that has not deleted yet does
    /// not start its change.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Runs one row. With a journal, every delete waits until its intent is
/// on disk.
pub async fn run(client: &Client, s: &JobSettings, safety: &Safety, t: Target) -> JobResult {
    let started = Instant::now();
    let mut job = Job {
        client,
        s,
        journal: safety.journal.as_ref(),
        gate: Some(&safety.gate),
        stop: Some(&safety.stop),
        row: t.row,
        user_raw: t.user_raw.clone(),
        res: RowResult::new(t.row, &t.user_raw, s.factor_type.as_str(), Outcome::Failed),
        fatal: None,
    };
    job.res.user_id.clone_from(&t.user_id);
    job.res.login.clone_from(&t.login);
    job.res.user_status.clone_from(&t.user_status);
    job.res.new_phone.clone_from(&t.phone.e164);
    for w in &t.warnings {
        job.res.note(w);
    }
    job.res.outcome = job.decide_and_act(&t).await;
    job.res.elapsed_ms = started.elapsed().as_millis() as u64;
    JobResult {
        result: job.res,
        fatal: job.fatal,
    }
}

struct Job<'a> {
    client: &'a Client,
    s: &'a JobSettings,
    journal: Option<&'a Journal>,
    gate: Option<&'a WriteGate>,
    stop: Option<&'a std::sync::atomic::AtomicBool>,
    row: u64,
    user_raw: String,
    res: RowResult,
    fatal: Option<OktaError>,
}

/// How a replacement of one factor ended.
enum Replaced {
    Done(UserFactor),
    Restored(OktaError),
    Unrestored(OktaError),
    /// Nothing changed (the delete failed).
    Untouched(OktaError),
    /// Nothing changed: the run was stopping before the delete.
    Skipped,
}

impl Job<'_> {
    fn fail(&mut self, e: OktaError, outcome: Outcome) -> Outcome {
        self.res.error = e.info();
        if e.is_fatal() {
            self.fatal = Some(e);
        }
        outcome
    }

    async fn list(&mut self, user_id: &str) -> Result<Vec<UserFactor>, OktaError> {
        let reply = self.client.list_factors(user_id).await;
        match reply {
            Ok(r) => {
                self.res.attempts += r.attempts;
                Ok(r.value)
            }
            Err(e) => {
                self.res.attempts += e.attempts;
                Err(e)
            }
        }
    }

    async fn decide_and_act(&mut self, t: &Target) -> Outcome {
        let ft = self.s.factor_type;
        let factors = match self.list(&t.user_id).await {
            Ok(f) => f,
            Err(e) if e.is_not_found() => {
                self.res.note("user does not exist or is deprovisioned (Okta answered 404 on the factor list)");
                return self.fail(e, Outcome::UserNotFound);
            }
            Err(e) => {
                self.res
                    .note("could not list the user's factors; nothing changed");
                return self.fail(e, Outcome::Failed);
            }
        };
        let of_type: Vec<&UserFactor> = factors.iter().filter(|f| is_phone_factor(f, ft)).collect();

        // The sheet's old number is a precondition: numbers the users
        // changed themselves since the sheet was made are not overwritten.
        if let Some(expected) = &t.old_phone {
            let matches = of_type.iter().any(|f| on_number(f, &expected.e164));
            let on_new = of_type.iter().any(|f| on_number(f, &t.phone.e164));
            if !matches && !on_new {
                self.res.old_phone = of_type
                    .first()
                    .and_then(|f| f.phone_number())
                    .map(normalize_stored)
                    .unwrap_or_default();
                self.res.note(if of_type.is_empty() {
                    format!("the sheet expects an old number but the user has no {ft} factor; left untouched")
                } else {
                    format!("the user's current {ft} number differs from the sheet's old number; left untouched")
                });
                return Outcome::ChangedSince;
            }
        }

        let activate = self.s.mode.activate();
        let on_new: Vec<&&UserFactor> = of_type
            .iter()
            .filter(|f| on_number(f, &t.phone.e164))
            .collect();
        if let Some(active) = on_new.iter().find(|f| f.status == "ACTIVE") {
            self.res.old_phone = t.phone.e164.clone();
            self.res.new_factor_id.clone_from(&active.id);
            self.res.new_factor_status.clone_from(&active.status);
            return Outcome::Unchanged;
        }
        if let Some(pending) = on_new.first()
            && !activate
        {
            self.res.old_phone = t.phone.e164.clone();
            self.res.new_factor_id.clone_from(&pending.id);
            self.res.new_factor_status.clone_from(&pending.status);
            self.res
                .note("already pending activation on the new number");
            return Outcome::Unchanged;
        }

        let target: Option<UserFactor> = if let Some(pending) = on_new.first() {
            Some((**pending).clone())
        } else if of_type.len() > 1 {
            // Identity Engine orgs may list several phones; the sheet's old
            // number, when given, says which one to replace.
            let chosen: Vec<&&UserFactor> = match &t.old_phone {
                Some(old) => of_type.iter().filter(|f| on_number(f, &old.e164)).collect(),
                None => Vec::new(),
            };
            if chosen.len() != 1 {
                self.res.note(format!(
                    "the user has {} {ft} factors and none is on the new number; refusing to guess which to replace (add an old_phone column to choose)",
                    of_type.len()
                ));
                return Outcome::Failed;
            }
            Some((**chosen[0]).clone())
        } else {
            of_type.first().map(|f| (*f).clone())
        };

        // The other phone factor on the same old number is never left
        // behind silently: a call twin of an sms factor is replaced too with
        // --also-call, and any twin is otherwise reported.
        let old_number = target
            .as_ref()
            .and_then(|f| f.phone_number())
            .map(normalize_stored);
        let other = match ft {
            FactorType::Sms => FactorType::Call,
            FactorType::Call => FactorType::Sms,
        };
        let twin: Option<UserFactor> = old_number.as_ref().and_then(|old| {
            factors
                .iter()
                .find(|f| is_phone_factor(f, other) && on_number(f, old))
                .cloned()
        });
        if let (Some(_), FactorType::Call) = (&twin, ft) {
            self.res.note(
                "an sms factor still holds the old number (replace it with a --factor-type sms run)",
            );
        }
        let call_twin = twin.filter(|_| ft == FactorType::Sms);

        let Some(target) = target else {
            if !self.s.if_missing_enroll {
                self.res.note(format!(
                    "the user has no {ft} factor; skipped (--if-missing enroll would enroll it)"
                ));
                return Outcome::NoFactor;
            }
            if !self.s.mode.writes() {
                return Outcome::WouldEnroll;
            }
            return match self
                .enroll(
                    &t.user_id,
                    ft,
                    &t.phone.e164,
                    t.phone.extension.as_deref(),
                    activate,
                )
                .await
            {
                Ok(f) => {
                    self.accept_new(&f, &t.phone, activate);
                    Outcome::Enrolled
                }
                Err(e) => {
                    // The enroll may have happened even though no answer
                    // came; look before reporting.
                    if e.outcome_unknown()
                        && let Some(f) = self.find_on(&t.user_id, ft, &t.phone.e164).await
                    {
                        self.accept_new(&f, &t.phone, activate);
                        self.res
                            .note("confirmed by listing the factors after an unanswered enroll");
                        return Outcome::Enrolled;
                    }
                    self.res
                        .note("the enroll failed; the user still has no factor of this type");
                    self.fail(e, Outcome::Failed)
                }
            };
        };

        self.res.old_phone = old_number.clone().unwrap_or_default();
        self.res.old_factor_id.clone_from(&target.id);

        if !self.s.mode.writes() {
            match (&call_twin, self.s.also_call) {
                (Some(_), true) => self.res.note("would also replace the call factor on the old number"),
                (Some(_), false) => self.res.note("a call factor holds the old number too and would be left as is (--also-call replaces it)"),
                _ => {}
            }
            return Outcome::WouldUpdate;
        }

        let replaced = self
            .replace(&t.user_id, ft, &target, &t.phone, activate)
            .await;
        let outcome = self.settle(replaced, ft, &t.phone, activate);

        if let Some(call) = call_twin {
            if !self.s.also_call {
                self.res
                    .note("a call factor still holds the old number (--also-call replaces it too)");
            } else if outcome == Outcome::Updated {
                match self
                    .replace(&t.user_id, FactorType::Call, &call, &t.phone, activate)
                    .await
                {
                    Replaced::Done(_) => self
                        .res
                        .note("the call factor on the old number was replaced too"),
                    Replaced::Skipped => self.res.note(
                        "the run stopped before the call factor on the old number was replaced; it is unchanged",
                    ),
                    Replaced::Untouched(e) => {
                        self.res.note(format!("the call factor on the old number could not be replaced ({e}); it is unchanged"));
                        return self.fail(e, Outcome::Failed);
                    }
                    Replaced::Restored(e) => {
                        self.res.note(format!("the call factor's new number was refused ({e}); its old number was put back"));
                        return self.fail(e, Outcome::FailedRestored);
                    }
                    Replaced::Unrestored(e) => {
                        self.res.note(format!("the call factor was deleted and could not be restored ({e}): the user has NO call factor now"));
                        return self.fail(e, Outcome::FailedUnrestored);
                    }
                }
            }
        }
        outcome
    }

    /// Delete `old`, enroll the new number; on failure, put `old` back.
    async fn replace(
        &mut self,
        user_id: &str,
        ft: FactorType,
        old: &UserFactor,
        new: &Phone,
        activate: bool,
    ) -> Replaced {
        let gate = self.gate;
        let _single = match gate {
            Some(g) => g.enter().await,
            None => None,
        };
        if self
            .stop
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Replaced::Skipped;
        }
        let previous = OldFactor {
            id: old.id.clone(),
            factor_type: ft.as_str().to_string(),
            status: old.status.clone(),
            phone: old.phone_number().map(normalize_stored).unwrap_or_default(),
            extension: old.phone_extension().map(str::to_string),
        };
        if let Some(journal) = self.journal {
            let intent = Intent {
                row: self.row,
                user: self.user_raw.clone(),
                user_id: user_id.to_string(),
                login: self.res.login.clone(),
                old: previous.clone(),
                new_phone: new.e164.clone(),
                new_extension: new.extension.clone(),
                activate,
            };
            // No durable record, no delete.
            if let Err(e) = journal.intent(&intent).await {
                return Replaced::Untouched(OktaError::local(format!(
                    "cannot write the journal: {e}"
                )));
            }
            self.res.intent = true;
        }
        match self
            .client
            .delete_factor(user_id, &old.id, self.s.remove_recovery)
            .await
        {
            Ok(r) => self.res.attempts += r.attempts,
            Err(e) if e.is_not_found() => {
                self.res.attempts += e.attempts;
                self.res
                    .note("the old factor was already gone when deleted");
            }
            Err(e) => {
                self.res.attempts += e.attempts;
                // A delete with no answer may still have happened: look.
                if !(e.outcome_unknown() && self.gone(user_id, &old.id).await) {
                    return Replaced::Untouched(e);
                }
            }
        }
        let replaced = self
            .enroll_or_restore(user_id, ft, &previous, new, activate)
            .await;
        if let (Replaced::Done(_), Some(g)) = (&replaced, gate) {
            g.prove();
        }
        replaced
    }

    /// With the old factor gone: enroll the new number, or put the old
    /// one back. An enroll with no answer is looked for, never repeated.
    async fn enroll_or_restore(
        &mut self,
        user_id: &str,
        ft: FactorType,
        previous: &OldFactor,
        new: &Phone,
        activate: bool,
    ) -> Replaced {
        let err = match self
            .enroll(user_id, ft, &new.e164, new.extension.as_deref(), activate)
            .await
        {
            Ok(f) => return Replaced::Done(f),
            Err(e) => e,
        };
        if err.outcome_unknown()
            && let Some(f) = self.find_on(user_id, ft, &new.e164).await
        {
            self.res
                .note("confirmed by listing the factors after an unanswered enroll");
            return Replaced::Done(f);
        }
        if err.is_fatal() {
            // Even with a dead token or a used-up quota, try the restore:
            // it is the one request that matters most.
            tracing::warn!(error = %err, "enroll failed with a run-stopping error; restoring the old number");
        }
        let was_active = previous.status == "ACTIVE";
        // The restore is the request that matters most: a transient failure
        // (no answer, 5xx) is retried a few times, each time after looking
        // whether it had in fact happened.
        let mut restore_err = None;
        for attempt in 0..RESTORE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self
                .enroll(
                    user_id,
                    ft,
                    &previous.phone,
                    previous.extension.as_deref(),
                    was_active,
                )
                .await
            {
                Ok(f) => {
                    self.res.new_factor_id.clone_from(&f.id);
                    self.res.new_factor_status.clone_from(&f.status);
                    return Replaced::Restored(err);
                }
                Err(e) => {
                    let transient = e.outcome_unknown() || e.kind == FailureKind::Connect;
                    restore_err = Some(e);
                    if !transient {
                        break;
                    }
                    if let Some(f) = self.find_on(user_id, ft, &previous.phone).await {
                        self.res.new_factor_id.clone_from(&f.id);
                        self.res.new_factor_status.clone_from(&f.status);
                        return Replaced::Restored(err);
                    }
                }
            }
        }
        // Before telling anyone a user has no factor, look: a refused
        // enroll may have been applied after all (then the restore is
        // refused because the factor exists).
        if let Ok(factors) = self.list(user_id).await {
            let on = |number: &str| factor_on(&factors, ft, number);
            if let Some(f) = on(&new.e164) {
                self.res.note(
                    "Okta refused the enroll but the factors show the new number: it was applied",
                );
                return Replaced::Done(f);
            }
            if let Some(f) = on(&previous.phone) {
                self.res.new_factor_id.clone_from(&f.id);
                self.res.new_factor_status.clone_from(&f.status);
                return Replaced::Restored(err);
            }
        }
        if let Some(e) = restore_err {
            tracing::error!(user_id, error = %e, "restoring the old number failed");
        }
        Replaced::Unrestored(err)
    }

    /// The row's outcome for a replacement of its main factor.
    fn settle(
        &mut self,
        replaced: Replaced,
        ft: FactorType,
        new: &Phone,
        activate: bool,
    ) -> Outcome {
        match replaced {
            Replaced::Done(f) => {
                self.accept_new(&f, new, activate);
                Outcome::Updated
            }
            Replaced::Untouched(e) => {
                self.res
                    .note("the old factor could not be deleted; nothing changed");
                self.fail(e, Outcome::Failed)
            }
            Replaced::Skipped => {
                self.res
                    .note("the run stopped before this row's change; nothing changed");
                Outcome::NotAttempted
            }
            Replaced::Restored(e) => {
                self.res.note(if e.outcome_unknown() {
                    "the enroll of the new number got no answer and the factors did not show it; the old number was put back"
                } else {
                    "the new number was refused after the old factor was deleted; the old number was put back"
                });
                self.fail(e, Outcome::FailedRestored)
            }
            Replaced::Unrestored(e) => {
                self.res.note(format!(
                    "the new number was refused and the old number could not be put back: the user has NO {ft} factor now; re-enroll the old number (old_phone) by hand"
                ));
                self.fail(e, Outcome::FailedUnrestored)
            }
        }
    }

    async fn enroll(
        &mut self,
        user_id: &str,
        ft: FactorType,
        number: &str,
        extension: Option<&str>,
        activate: bool,
    ) -> Result<UserFactor, OktaError> {
        match self
            .client
            .enroll_factor(user_id, ft, number, extension, activate)
            .await
        {
            Ok(r) => {
                self.res.attempts += r.attempts;
                Ok(r.value)
            }
            Err(e) => {
                self.res.attempts += e.attempts;
                Err(e)
            }
        }
    }

    /// After an unanswered request: is a factor of the type on `number`?
    async fn find_on(&mut self, user_id: &str, ft: FactorType, number: &str) -> Option<UserFactor> {
        let factors = self.list(user_id).await.ok()?;
        factor_on(&factors, ft, number)
    }

    /// After an unanswered delete: is the factor gone?
    async fn gone(&mut self, user_id: &str, factor_id: &str) -> bool {
        match self.list(user_id).await {
            Ok(factors) => !factors.iter().any(|f| f.id == factor_id),
            Err(_) => false,
        }
    }

    fn accept_new(&mut self, f: &UserFactor, new: &Phone, activate: bool) {
        self.res.new_factor_id.clone_from(&f.id);
        self.res.new_factor_status.clone_from(&f.status);
        let expected = if activate {
            "ACTIVE"
        } else {
            "PENDING_ACTIVATION"
        };
        // Okta re-enrolling a number the user had verified before may come
        // back ACTIVE even without activation (docs/okta-behaviour.md, F5).
        let reactivated = f.status == "ACTIVE" && !activate;
        if f.status != expected && !reactivated {
            self.res.note(format!(
                "Okta answered with status {} where {expected} was expected",
                f.status
            ));
        }
        if !on_number(f, &new.e164) {
            self.res
                .note("Okta's answer does not carry the new number; check this user");
        }
    }
}

/// Whether the factor carries `number` (Okta may store it with dashes).
fn on_number(f: &UserFactor, number: &str) -> bool {
    f.phone_number()
        .is_some_and(|n| phone::same_number(n, number))
}

/// The factor of the type on `number`, if any.
fn factor_on(factors: &[UserFactor], ft: FactorType, number: &str) -> Option<UserFactor> {
    factors
        .iter()
        .find(|f| is_phone_factor(f, ft) && on_number(f, number))
        .cloned()
}

fn is_phone_factor(f: &UserFactor, ft: FactorType) -> bool {
    f.factor_type.eq_ignore_ascii_case(ft.as_str())
        && (f.provider.is_empty() || f.provider.eq_ignore_ascii_case("OKTA"))
}

/// Okta may store numbers with dashes or spaces; reports hold `+digits`.
fn normalize_stored(n: &str) -> String {
    format!("+{}", phone::digits(n))
}

/// Completes a row that a stopped run left between its intent and its end
/// (the delete-then-enroll gap, docs/okta-behaviour.md). `None` when the old factor is
/// still there: nothing happened, and the row simply runs again.
pub async fn recover(
    client: &Client,
    s: &JobSettings,
    journal: &Journal,
    intent: &Intent,
) -> Option<JobResult> {
    let started = Instant::now();
    let ft = if intent.old.factor_type == FactorType::Call.as_str() {
        FactorType::Call
    } else {
        FactorType::Sms
    };
    let mut job = Job {
        client,
        s,
        journal: Some(journal),
        gate: None,
        stop: None,
        row: intent.row,
        user_raw: intent.user.clone(),
        res: RowResult::new(intent.row, &intent.user, ft.as_str(), Outcome::Failed),
        fatal: None,
    };
    job.res.user_id.clone_from(&intent.user_id);
    job.res.login.clone_from(&intent.login);
    job.res.old_phone.clone_from(&intent.old.phone);
    job.res.new_phone.clone_from(&intent.new_phone);
    job.res.old_factor_id.clone_from(&intent.old.id);
    job.res.intent = true;
    let factors = match job.list(&intent.user_id).await {
        Ok(f) => f,
        Err(e) => {
            job.res.note("resume: could not list the factors of a row interrupted mid-change; run --resume again");
            let out = job.fail(e, Outcome::Failed);
            job.res.outcome = out;
            return Some(JobResult {
                result: job.res,
                fatal: job.fatal,
            });
        }
    };
    if factors.iter().any(|f| f.id == intent.old.id) {
        return None;
    }
    let new = Phone {
        e164: intent.new_phone.clone(),
        extension: intent.new_extension.clone(),
    };
    let on = |number: &str| factor_on(&factors, ft, number);
    job.res.outcome = if let Some(f) = on(&new.e164) {
        job.accept_new(&f, &new, intent.activate);
        job.res.note("resume: the interrupted change had completed");
        Outcome::Updated
    } else if let Some(f) = on(&intent.old.phone) {
        // Put back by an earlier attempt; the new number never made it.
        job.res.new_factor_id.clone_from(&f.id);
        job.res.new_factor_status.clone_from(&f.status);
        job.res
            .note("resume: the old number is in place; the new one was not enrolled");
        Outcome::FailedRestored
    } else {
        job.res
            .note("resume: completing a change interrupted between delete and enroll");
        let replaced = job
            .enroll_or_restore(&intent.user_id, ft, &intent.old, &new, intent.activate)
            .await;
        job.settle(replaced, ft, &new, intent.activate)
    };
    job.res.elapsed_ms = started.elapsed().as_millis() as u64;
    Some(JobResult {
        result: job.res,
        fatal: job.fatal,
    })
}
