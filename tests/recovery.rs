//! Nothing lost: kills at any point, resume, rollback, locking, SIGTERM.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use okta_phone_migrate::simulator::{Fault, FaultAction, SimConfig};
use serde_json::json;

const USERS: u32 = 12;

fn id(i: u32) -> String {
    format!("00u1abc00000000001{i:02}")
}

fn old_number(i: u32) -> String {
    format!("+121355501{i:02}")
}

fn new_number(i: u32) -> String {
    format!("+131055501{i:02}")
}

/// An org whose enrolls are slow, so a kill often lands between a delete
/// and its enroll.
fn slow_org() -> Sim {
    let users: Vec<_> = (0..USERS)
        .map(|i| {
            user(
                &id(i),
                &format!("r{i}@example.com"),
                &[("sms", &old_number(i), "ACTIVE")],
            )
        })
        .collect();
    let sim = Sim::start(
        SimConfig {
            rate_limit: 100_000,
            latency: Duration::from_millis(15),
            ..SimConfig::default()
        },
        json!({ "users": users }),
    );
    sim.add_fault(Fault::new(FaultAction::Delay { ms: 250 }).op("enrollFactor"));
    sim
}

fn input(run: &Run) -> std::path::PathBuf {
    let mut csv = String::from("user,new_phone\n");
    for i in 0..USERS {
        csv.push_str(&format!("{},{}\n", id(i), new_number(i)));
    }
    run.write("in.csv", &csv)
}

fn spawn_apply(run: &Run, sim: &Sim, input: &std::path::Path, extra: &[&str]) -> Child {
    let mut c = run.cmd();
    c.args([
        "apply",
        "--activate",
        "--concurrency",
        "4",
        "--org-url",
        &sim.url(),
        "--report",
    ])
    .arg(run.path("report.csv"))
    .arg("--input")
    .arg(input)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c.spawn().expect("binary starts")
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every user ends with exactly one sms factor, on the new number, and the
/// report has exactly one line per input row, all updated.
fn assert_converged(run: &Run, sim: &Sim, context: &str) {
    for i in 0..USERS {
        let u = sim.user(&id(i));
        assert_eq!(
            u.numbers_of("sms"),
            vec![new_number(i)],
            "user {i} after {context}"
        );
        assert_eq!(u.factors_of("sms").next().unwrap().status, "ACTIVE");
    }
    let rep = run.report();
    assert_eq!(
        rep.len(),
        USERS as usize,
        "one line per row after {context}: {rep:#?}"
    );
    for (n, r) in rep.iter().enumerate() {
        assert_eq!(r["row"], (n + 1).to_string(), "report in input order");
        assert!(
            r["outcome"] == "updated" || r["outcome"] == "unchanged",
            "{context}: {r:?}"
        );
    }
}

#[test]
fn sigkill_at_any_point_then_resume_converges() {
    // Bounded: a handful of kill points spread over a run of about 1.5 s;
    // OKTA_PHONE_MIGRATE_SOAK=N runs N of them.
    let points: u64 = std::env::var("OKTA_PHONE_MIGRATE_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut killed_mid_change = 0;
    for k in 0..points {
        let sim = slow_org();
        let run = Run::new();
        let input = input(&run);
        let mut child = spawn_apply(&run, &sim, &input, &[]);
        std::thread::sleep(Duration::from_millis(60 + k * 1400 / points));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        // Did the kill land between a delete and its enroll?
        if (0..USERS).any(|i| sim.user(&id(i)).factors.is_empty()) {
            killed_mid_change += 1;
        }
        let mut resumed = spawn_apply(&run, &sim, &input, &["--resume"]);
        let code = wait_with_timeout(&mut resumed, Duration::from_secs(60));
        let mut err = String::new();
        std::io::Read::read_to_string(resumed.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(code == 0, "kill point {k}: resume exited {code}: {err}");
        assert_converged(&run, &sim, &format!("kill point {k}"));
        // Exactly one enroll per user that changed: nothing was redone blindly.
        let enrolls = sim
            .writes()
            .into_iter()
            .filter(|r| r.method == "POST")
            .count();
        assert_eq!(
            enrolls, USERS as usize,
            "kill point {k}: one enroll per user"
        );
    }
    assert!(
        killed_mid_change > 0,
        "no kill landed between a delete and its enroll; widen the window"
    );
}

#[test]
fn sigterm_stops_cleanly_with_exit_4_and_a_resume_hint() {
    let sim = slow_org();
    let run = Run::new();
    let input = input(&run);
    let mut child = spawn_apply(&run, &sim, &input, &[]);
    // Once the report exists the run is under way (bounded wait).
    let started = Instant::now();
    while !run.path("report.csv").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let code = wait_with_timeout(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--resume"), "{err}");
    let rep = run.report();
    assert_eq!(rep.len(), USERS as usize, "every row has a line");
    assert!(rep.iter().any(|r| r["outcome"] == "not_attempted"));
    // Never stopped between delete and enroll.
    for i in 0..USERS {
        assert_eq!(sim.user(&id(i)).factors_of("sms").count(), 1, "user {i}");
    }
    let journal = okta_phone_migrate::journal::read(&run.path("report.csv.journal")).unwrap();
    assert!(
        journal.open.is_empty(),
        "open intents after a clean stop: {:?}",
        journal.open
    );
    assert!(!run.path("report.csv.lock").exists(), "lock released");

    // And the resume finishes the rest.
    let mut resumed = spawn_apply(&run, &sim, &input, &["--resume"]);
    assert_eq!(wait_with_timeout(&mut resumed, Duration::from_secs(60)), 0);
    assert_converged(&run, &sim, "SIGTERM and resume");
}

#[test]
fn a_second_run_on_the_same_report_is_refused() {
    let sim = slow_org();
    let run = Run::new();
    let input = input(&run);
    // A live process (this test) holds the lock.
    std::fs::write(
        run.path("report.csv.lock"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("another run"), "{}", stderr(&out));
    assert!(sim.requests().is_empty());

    // A finished run's report is not started over: it says how to resume.
    std::fs::remove_file(run.path("report.csv.lock")).unwrap();
    assert_eq!(code(&run.tool("apply", &sim, &input, &["--activate"])), 0);
    let again = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
}

#[test]
fn resume_refuses_a_different_input() {
    let sim = slow_org();
    let run = Run::new();
    let input = input(&run);
    assert_eq!(code(&run.tool("apply", &sim, &input, &["--activate"])), 0);
    let other = run.write(
        "other.csv",
        &format!("user,new_phone\n{},{}\n", id(0), old_number(0)),
    );
    let out = run.tool("apply", &sim, &other, &["--activate", "--resume"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("input file differs"),
        "{}",
        stderr(&out)
    );
    // Same file, other options that change what rows do: refused too.
    let out = run.tool(
        "apply",
        &sim,
        &input,
        &["--activate", "--resume", "--if-missing", "enroll"],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("options differ"), "{}", stderr(&out));
}

#[test]
fn rollback_puts_old_numbers_back_but_not_over_later_changes() {
    let sim = slow_org();
    sim.clear_faults();
    let run = Run::new();
    let input = input(&run);
    assert_eq!(code(&run.tool("apply", &sim, &input, &["--activate"])), 0);
    // Someone changes user 3 after the run.
    let later = run.write(
        "later.csv",
        &format!("user,new_phone\n{},+14155550103\n", id(3)),
    );
    assert_eq!(
        code(&run.tool_to("later-report.csv", "apply", &sim, &later, &["--activate"])),
        0
    );

    let journal = run.path("report.csv.journal");
    let rollback = |extra: &[&str], report: &str| {
        let mut c = run.cmd();
        c.args(["rollback", "--yes", "--journal"])
            .arg(&journal)
            .arg("--report")
            .arg(run.path(report))
            .args(extra);
        c.output().unwrap()
    };
    // A dry run writes nothing.
    sim.clear_requests();
    let dry = rollback(&["--dry-run"], "dry.csv");
    assert_eq!(code(&dry), 1, "{}", stderr(&dry));
    assert!(sim.writes().is_empty());

    let out = rollback(&[], "rollback.csv");
    assert_eq!(
        code(&out),
        1,
        "changed_since makes it exit 1: {}",
        stderr(&out)
    );
    let rep = read_report(&run.path("rollback.csv"));
    assert_eq!(rep.len(), USERS as usize);
    for i in 0..USERS {
        let u = sim.user(&id(i));
        if i == 3 {
            assert_eq!(
                u.numbers_of("sms"),
                vec!["+14155550103"],
                "a later change is not undone"
            );
        } else {
            assert_eq!(
                u.numbers_of("sms"),
                vec![old_number(i)],
                "user {i} rolled back"
            );
        }
    }
    assert_eq!(
        rep.iter()
            .filter(|r| r["outcome"] == "changed_since")
            .count(),
        1
    );

    // --force puts it back anyway.
    let forced = rollback(&["--force"], "forced.csv");
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert_eq!(sim.user(&id(3)).numbers_of("sms"), vec![old_number(3)]);
}

// Pins: the file is read twice; one edited in between (rows shifted, as a
// re-save from a spreadsheet can do) must not pair users with other rows'
// numbers: the run stops before writing.
#[test]
fn an_input_edited_during_the_run_stops_it_before_any_write() {
    let sim = slow_org();
    sim.add_fault(Fault::new(FaultAction::Delay { ms: 150 }).op("getUser"));
    let run = Run::new();
    let mut csv = String::from("login,new_phone\n");
    for i in 0..USERS {
        csv.push_str(&format!("r{i}@example.com,{}\n", new_number(i)));
    }
    let input = run.write("in.csv", &csv);
    let mut child = spawn_apply(&run, &sim, &input, &[]);
    let started = Instant::now();
    while sim.requests().is_empty() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Shift every number down one row, same length.
    let mut shifted = String::from("login,new_phone\n");
    for i in 0..USERS {
        shifted.push_str(&format!(
            "r{i}@example.com,{}\n",
            new_number((i + 1) % USERS)
        ));
    }
    std::fs::write(&input, shifted).unwrap();
    let code = wait_with_timeout(&mut child, Duration::from_secs(60));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("input file changed"), "{err}");
    assert!(
        sim.writes().is_empty(),
        "wrote after the input changed: {:?}",
        sim.writes()
    );
    let rep = run.report();
    assert_eq!(rep.len(), USERS as usize);
    assert!(
        rep.iter().all(|r| r["outcome"] == "not_attempted"),
        "{rep:#?}"
    );
}

// Pins: a user the run left without the factor is not a dead end: once
// the cause is gone, --resume tries again and the user gets a factor.
#[test]
fn resume_retries_a_user_left_without_the_factor() {
    let sim = slow_org();
    sim.clear_faults();
    // Every enroll for user 0 refused, the restore included.
    sim.add_fault(
        Fault::respond(
            400,
            "E0000001",
            "Api validation failed: factorEnrollRequest",
        )
        .op("enrollFactor")
        .user(&id(0)),
    );
    let run = Run::new();
    let input = run.write(
        "in.csv",
        &format!("user,new_phone\n{},{}\n", id(0), new_number(0)),
    );
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "failed_unrestored");
    assert!(sim.user(&id(0)).factors.is_empty());

    sim.clear_faults();
    let out = run.tool("apply", &sim, &input, &["--activate", "--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0]["outcome"], "updated");
    assert_eq!(sim.user(&id(0)).numbers_of("sms"), vec![new_number(0)]);
}
