//! `rollback`: puts back the old numbers of the rows a run updated, read
//! from the run's journal.
//!
//! A rollback is itself an ordinary run of the main job, on an input made
//! from the journal — user id, the old number as the number to set, and the
//! number the run set as the `old_phone` precondition — so it gets the same
//! pacing, journal, restore-on-failure and report. Without `--force`, a
//! user whose factor no longer carries the number the run set ends
//! `changed_since` and is left alone.

use std::io::Write;
use std::path::PathBuf;

use crate::cli::{FactorTypeArg, IfMissing, InputArgs, RollbackArgs, RunArgs};
use crate::config::{self, ConfigError, Context, Mode};
use crate::journal;
use crate::outcome::Outcome;
use crate::progress::eprint_line;
use crate::runner::{self, EXIT_USAGE};

/// Runs `rollback`; returns the exit code.
pub async fn run(args: RollbackArgs, ctx: &Context<'_>) -> u8 {
    let st = match journal::read(&args.journal) {
        Ok(st) => st,
        Err(e) => {
            eprint_line(&format!(
                "error: cannot read the journal {}: {e}",
                args.journal.display()
            ));
            return EXIT_USAGE;
        }
    };
    let Some(header) = st.header else {
        eprint_line(&format!(
            "error: {} is not a journal (no run header)",
            args.journal.display()
        ));
        return EXIT_USAGE;
    };
    if !st.open.is_empty() {
        eprint_line(&format!(
            "error: the run has {} row(s) stopped between delete and enroll; finish it first with `apply --resume`",
            st.open.len()
        ));
        return EXIT_USAGE;
    }
    let org = args
        .okta
        .org_url
        .clone()
        .unwrap_or_else(|| header.org_url.clone());
    match config::parse_org_url(&org) {
        Ok(url) if url.as_str() == header.org_url => {}
        Ok(url) => {
            eprint_line(&format!(
                "error: the journal is of a run on {}, not {url}",
                header.org_url
            ));
            return EXIT_USAGE;
        }
        Err(e) => return fail(&e),
    }
    let updated: Vec<_> = st
        .done
        .values()
        .filter(|d| d.outcome == Outcome::Updated && !d.old_phone.is_empty())
        .collect();
    if updated.is_empty() {
        eprint_line("nothing to roll back: the journal has no updated rows");
        return 0;
    }

    // Timestamped, so a dry run does not take the real rollback's name.
    let report = args.report.clone().unwrap_or_else(|| {
        let stamp = crate::config::timestamp();
        let mut p = args.journal.as_os_str().to_owned();
        p.push(if args.dry_run {
            format!(".rollback-dry-run-{stamp}.csv")
        } else {
            format!(".rollback-{stamp}.csv")
        });
        PathBuf::from(p)
    });
    // The input made from the journal stays beside the rollback's report:
    // it is exactly what the rollback was asked to do.
    let input = {
        let mut p = report.as_os_str().to_owned();
        p.push(".input.csv");
        PathBuf::from(p)
    };
    let written = crate::report::create_private(&input).and_then(|f| {
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
        w.write_record(["user", "new_phone", "old_phone", "rolls_back_row"])?;
        for d in &updated {
            let precondition = if args.force { "" } else { d.new_phone.as_str() };
            w.write_record([
                d.user_id.as_str(),
                &d.old_phone,
                precondition,
                &d.row.to_string(),
            ])?;
        }
        let mut inner = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        inner.flush()
    });
    if let Err(e) = written {
        eprint_line(&format!("error: cannot write {}: {e}", input.display()));
        return EXIT_USAGE;
    }
    eprint_line(&format!(
        "rollback of {} updated row(s) from {}; input {}",
        updated.len(),
        args.journal.display(),
        input.display()
    ));

    let run_args = RunArgs {
        okta: crate::cli::OktaArgs {
            org_url: Some(header.org_url.clone()),
            ..args.okta
        },
        input: InputArgs {
            input,
            default_region: None,
            factor_type: Some(if header.factor_type == "call" {
                FactorTypeArg::Call
            } else {
                FactorTypeArg::Sms
            }),
            user_column: None,
            phone_column: None,
            // The numbers were accepted by the run and by Okta already.
            allow_unknown_ranges: true,
        },
        report: Some(report),
        if_missing: IfMissing::Skip,
        tuning: args.tuning,
        output: args.output,
        ..RunArgs::default()
    };
    let mode = if args.dry_run {
        Mode::Plan { activate: true }
    } else {
        Mode::Apply { activate: true }
    };
    match config::run_config(&run_args, mode, ctx) {
        Ok(mut cfg) => {
            cfg.assume_yes = args.yes;
            runner::run(cfg).await
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &ConfigError) -> u8 {
    eprint_line(&format!("error: {e}"));
    if let Some(h) = &e.hint {
        eprint_line(&format!("hint: {h}"));
    }
    EXIT_USAGE
}
