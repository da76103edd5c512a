//! Rate limits and retries, asserted on what the server saw (never on
//! wall-clock speed).

mod common;

use std::time::Duration;

use common::*;
use okta_phone_migrate::simulator::{Fault, FaultAction, SimConfig};
use serde_json::json;

fn org(n: u32, cfg: SimConfig) -> Sim {
    let users: Vec<_> = (0..n)
        .map(|i| {
            user(
                &format!("00u1abc00000000002{i:02}"),
                &format!("p{i}@example.com"),
                &[("sms", &format!("+121355501{i:02}"), "ACTIVE")],
            )
        })
        .collect();
    Sim::start(cfg, json!({ "users": users }))
}

fn csv(n: u32) -> String {
    let mut s = String::from("user,new_phone\n");
    for i in 0..n {
        s.push_str(&format!("00u1abc00000000002{i:02},+131055501{i:02}\n"));
    }
    s
}

// Pins: the tool learns a small limit from the headers and stays under it
// across several windows, so a lone client never sees a 429.
#[test]
fn a_lone_client_paced_by_the_headers_gets_no_429() {
    let sim = org(
        12,
        SimConfig {
            rate_limit: 12,
            window: Duration::from_secs(1),
            ..SimConfig::default()
        },
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(12));
    let out = run.tool(
        "apply",
        &sim,
        &input,
        &["--activate", "--rate-share", "100%"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let reqs = sim.requests();
    assert_eq!(reqs.len(), 36, "three requests a row");
    let throttled: Vec<_> = reqs.iter().filter(|r| r.status == 429).collect();
    assert!(throttled.is_empty(), "429s: {throttled:?}");
}

// Pins: with a share below 100%, the tool leaves the rest of each window
// to other clients: no window sees more than the share.
#[test]
fn the_rate_share_leaves_room_for_other_clients() {
    let sim = org(
        8,
        SimConfig {
            rate_limit: 10,
            window: Duration::from_secs(1),
            ..SimConfig::default()
        },
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(8));
    let out = run.tool(
        "apply",
        &sim,
        &input,
        &["--activate", "--rate-share", "50%"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let reqs = sim.requests();
    assert!(reqs.iter().all(|r| r.status != 429));
    // Count requests per simulator window: the remaining header of each
    // response never went below half the limit.
    let mut starts: Vec<u64> = reqs.iter().map(|r| r.t_start_ms).collect();
    starts.sort_unstable();
    let max_in_any_second = starts
        .iter()
        .map(|t| {
            starts
                .iter()
                .filter(|u| **u >= *t && **u < t + 1000)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        max_in_any_second <= 7,
        "{max_in_any_second} requests within one second; the share allows 5 a window"
    );
}

// Pins: 5xx on a safe request is retried with backoff until the budget is
// spent; the row then fails with the last error and nothing changed.
#[test]
fn retry_budget_exhaustion_fails_the_row_with_the_last_error() {
    let sim = org(1, SimConfig::default());
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 503,
            error_code: "E0000009".into(),
            error_summary: "Internal Server Error".into(),
            error_causes: vec![],
        })
        .op("listFactors"),
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(1));
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = &run.report()[0];
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["http_status"], "503");
    assert_eq!(r["error_code"], "E0000009");
    assert_eq!(r["attempts"], "5");
    assert_eq!(sim.requests().len(), 5);
    assert!(sim.writes().is_empty());
}

// Pins: a 5xx on a delete is retried (a repeated delete is harmless).
#[test]
fn a_failed_delete_is_retried() {
    let sim = org(1, SimConfig::default());
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 502,
            error_code: String::new(),
            error_summary: "Bad Gateway".into(),
            error_causes: vec![],
        })
        .op("unenrollFactor")
        .times(2),
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(1));
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "updated");
    assert_eq!(run.report()[0]["attempts"], "5", "list, 3 deletes, enroll");
}

// Pins: an enroll answered 5xx is never repeated: the factors are listed,
// and since the new number is not there the old one is put back.
#[test]
fn an_enroll_answered_5xx_is_not_repeated_blindly() {
    let sim = org(1, SimConfig::default());
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 500,
            error_code: "E0000009".into(),
            error_summary: "Internal Server Error".into(),
            error_causes: vec![],
        })
        .op("enrollFactor")
        .phone("+13105550100"),
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(1));
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "failed_restored");
    let enrolls: Vec<_> = sim
        .writes()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            r.body.unwrap()["profile"]["phoneNumber"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        enrolls,
        vec!["+13105550100", "+12135550100"],
        "one try of the new number, then the restore"
    );
    assert_eq!(
        sim.user("00u1abc0000000000200").numbers_of("sms"),
        vec!["+12135550100"]
    );
}

// Pins: a daily SMS quota error stops the run (retrying is futile), with
// the rows not started reported not_attempted.
#[test]
fn an_org_sms_quota_error_stops_the_run() {
    let sim = org(10, SimConfig::default());
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 429,
            error_code: "E0000146".into(),
            error_summary: "The org's daily SMS limit has been reached.".into(),
            error_causes: vec![],
        })
        .op("enrollFactor")
        .phone("+13105550100"),
    );
    let run = Run::new();
    let input = run.write("in.csv", &csv(10));
    let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "1"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(stderr(&out).contains("quota"), "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(rep.len(), 10);
    assert_eq!(rep[0]["outcome"], "failed_restored");
    assert!(
        rep[1..].iter().all(|r| r["outcome"] == "not_attempted"),
        "{rep:#?}"
    );
}
