//! End-to-end: the real binary against the simulator on 127.0.0.1.

mod common;

use common::*;
use okta_phone_migrate::simulator::{Fault, FaultAction, SimConfig};
use serde_json::json;

const COLUMNS: &str = "row,user,user_id,login,user_status,factor_type,old_phone,new_phone,outcome,detail,old_factor_id,new_factor_id,new_factor_status,attempts,http_status,error_code,error_summary,error_causes,request_id,elapsed_ms";

fn org() -> Sim {
    Sim::with_users(vec![
        user(
            "00u1abc0000000000011",
            "ana@example.com",
            &[("sms", "+12135550111", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000012",
            "bo@example.com",
            &[("sms", "+12135550112", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000013",
            "cy@example.com",
            &[("sms", "+12135550113", "ACTIVE")],
        ),
        user("00u1abc0000000000014", "di@example.com", &[]),
        user(
            "00u1abc0000000000015",
            "sam@example.com",
            &[("sms", "+12135550105", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000016",
            "lu@example.com",
            &[("sms", "+12135550106", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000017",
            "mo@example.com",
            &[("sms", "+12135550107", "ACTIVE")],
        ),
    ])
}

#[test]
fn full_run_gives_every_row_its_outcome_and_changes_only_what_it_should() {
    let sim = org();
    let run = Run::new();
    let input = run.write(
        "in.csv",
        "\u{feff}user,new_phone,old_phone\r\n\
         00u1abc0000000000011,+1 213-555-0211,\r\n\
         bo@example.com,(213) 555-0212,\r\n\
         00u1abc0000000000013,+12135550113,\r\n\
         00u1abc0000000000014,+12135550214,\r\n\
         nobody@example.com,+12135550215,\r\n\
         00u1abc0000000000015,+12135550115,\r\n\
         sam@example.com,+12135550115,\r\n\
         00u1abc0000000000016,+12135550116,\r\n\
         lu@example.com,+12135550199,\r\n\
         00u1abc0000000000017,+12135550217,+12135550999\r\n\
         00u1abc0000000000012,not a number,\r\n",
    );
    let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "8"]);
    assert_eq!(code(&out), 1, "stderr: {}", stderr(&out));

    let header = std::fs::read_to_string(run.path("report.csv")).unwrap();
    assert_eq!(header.lines().next().unwrap(), COLUMNS);
    let rep = run.report();
    assert_eq!(rep.len(), 11, "one line per input row");
    let outcome = |n| row(&rep, n)["outcome"].clone();
    assert_eq!(outcome(1), "updated");
    // Row 11 names the same user with a damaged number: conflict.
    assert_eq!(outcome(2), "conflict");
    assert_eq!(outcome(3), "unchanged");
    assert_eq!(outcome(4), "no_factor");
    assert_eq!(outcome(5), "user_not_found");
    assert_eq!(outcome(6), "updated");
    assert_eq!(outcome(7), "duplicate");
    assert!(row(&rep, 7)["detail"].contains("row 6"));
    assert_eq!(outcome(8), "conflict");
    assert_eq!(outcome(9), "conflict");
    assert_eq!(outcome(10), "changed_since");
    assert_eq!(outcome(11), "invalid");
    assert!(
        row(&rep, 11)["detail"].contains("new_phone"),
        "{:?}",
        row(&rep, 11)
    );

    let r1 = row(&rep, 1);
    assert_eq!(r1["old_phone"], "+12135550111");
    assert_eq!(r1["new_phone"], "+12135550211");
    assert_eq!(r1["new_factor_status"], "ACTIVE");
    assert!(!r1["old_factor_id"].is_empty() && !r1["new_factor_id"].is_empty());
    assert_eq!(r1["attempts"], "3", "list, delete, enroll");
    assert_eq!(row(&rep, 2)["user_id"], "00u1abc0000000000012");
    assert_eq!(
        sim.user("00u1abc0000000000012").numbers_of("sms"),
        vec!["+12135550112"]
    );

    // The server's state: new numbers where updated, untouched elsewhere.
    assert_eq!(
        sim.user("00u1abc0000000000011").numbers_of("sms"),
        vec!["+12135550211"]
    );
    assert_eq!(
        sim.user("00u1abc0000000000015").numbers_of("sms"),
        vec!["+12135550115"]
    );
    assert_eq!(
        sim.user("00u1abc0000000000016").numbers_of("sms"),
        vec!["+12135550106"]
    );
    assert_eq!(
        sim.user("00u1abc0000000000017").numbers_of("sms"),
        vec!["+12135550107"]
    );
    assert!(sim.user("00u1abc0000000000014").factors.is_empty());

    // Every enroll carried updatePhone=true and activate=true.
    let enrolls: Vec<_> = sim
        .writes()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(enrolls.len(), 2);
    for e in &enrolls {
        let q = e.query.clone().unwrap_or_default();
        assert!(
            q.contains("updatePhone=true") && q.contains("activate=true"),
            "{q}"
        );
    }
    // Nothing was written for the conflicting user.
    assert!(
        !sim.writes()
            .iter()
            .any(|r| r.path.contains("00u1abc0000000000016"))
    );
    // Logs never show a full number.
    assert!(!stderr(&out).contains("2135550211"), "{}", stderr(&out));
}

#[test]
fn rerunning_a_finished_csv_changes_nothing() {
    let sim = org();
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000013,+12135550213\n");
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "updated");
    // Exactly one list, one delete of that factor, one enroll.
    let reqs = sim.requests();
    let ops: Vec<_> = reqs.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(ops, ["GET", "DELETE", "POST"]);

    sim.clear_requests();
    let out = run.tool_to("second.csv", "apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        read_report(&run.path("second.csv"))[0]["outcome"],
        "unchanged"
    );
    assert!(sim.writes().is_empty());
    assert_eq!(
        sim.requests().len(),
        1,
        "an unchanged row costs one request"
    );
}

#[test]
fn plan_sends_no_writes_and_says_what_would_change() {
    let sim = org();
    let run = Run::new();
    let input = run.write(
        "in.csv",
        "login,phone\nana@example.com,+12135550211\ndi@example.com,+12135550214\n00u1abc0000000000013,+12135550113\n",
    );
    let out = run.tool("plan", &sim, &input, &["--if-missing", "enroll"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(sim.writes().is_empty(), "plan wrote: {:?}", sim.writes());
    assert!(sim.requests().iter().all(|r| r.method == "GET"));
    let rep = run.report();
    assert_eq!(row(&rep, 1)["outcome"], "would_update");
    assert_eq!(row(&rep, 2)["outcome"], "would_enroll");
    assert_eq!(row(&rep, 3)["outcome"], "unchanged");
    let table = stdout(&out);
    assert!(
        table.contains("would_update") && table.contains("ana@example.com"),
        "{table}"
    );
    assert!(
        !table.contains("2135550211"),
        "stdout shows a full number: {table}"
    );
    assert_eq!(
        sim.user("00u1abc0000000000011").numbers_of("sms"),
        vec!["+12135550111"]
    );
}

#[test]
fn refused_enroll_puts_the_old_number_back() {
    let sim = org();
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 400,
            error_code: "E0000001".into(),
            error_summary: "Api validation failed: factorEnrollRequest".into(),
            error_causes: vec!["Invalid Phone Number.".into()],
        })
        .op("enrollFactor")
        .phone("+12135550211"),
    );
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000011,+12135550211\n");
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = &run.report()[0];
    assert_eq!(r["outcome"], "failed_restored");
    assert_eq!(r["error_code"], "E0000001");
    assert_eq!(r["error_causes"], "Invalid Phone Number.");
    assert_eq!(r["http_status"], "400");
    assert!(!r["request_id"].is_empty());
    let u = sim.user("00u1abc0000000000011");
    assert_eq!(u.numbers_of("sms"), vec!["+12135550111"]);
    assert_eq!(u.factors_of("sms").next().unwrap().status, "ACTIVE");
    // No blind retry of the refused enroll: one for the new number, one restore.
    let posts = sim
        .writes()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2);
}

#[test]
fn refused_restore_is_failed_unrestored_with_exit_3_and_a_loud_summary() {
    let sim = org();
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 400,
            error_code: "E0000098".into(),
            error_summary: "This phone number is invalid.".into(),
            error_causes: vec![],
        })
        .op("enrollFactor")
        .user("00u1abc0000000000011"),
    );
    let run = Run::new();
    let input = run.write(
        "in.csv",
        "user,phone\n00u1abc0000000000011,+12135550211\n00u1abc0000000000013,+12135550213\n",
    );
    let out = run.tool(
        "apply",
        &sim,
        &input,
        &["--activate", "--summary-json", "summary.json"],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(row(&rep, 1)["outcome"], "failed_unrestored");
    assert_eq!(row(&rep, 1)["old_phone"], "+12135550111");
    // A user left without the factor stops the run: the next user is not
    // put at risk (it waited at the write gate behind row 1).
    assert_eq!(row(&rep, 2)["outcome"], "not_attempted");
    assert_eq!(
        sim.user("00u1abc0000000000013").numbers_of("sms"),
        vec!["+12135550113"]
    );
    assert!(stderr(&out).contains("NO FACTOR"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopping so that no other user"),
        "{}",
        stderr(&out)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["unrestored_rows"], json!([1]));
    assert_eq!(summary["exit_code"], json!(3));
}

#[test]
fn enroll_without_an_answer_is_checked_not_repeated() {
    let sim = org();
    sim.add_fault(
        Fault::new(FaultAction::PerformThenDrop)
            .op("enrollFactor")
            .times(1),
    );
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000011,+12135550211\n");
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "updated");
    let posts = sim
        .writes()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 1, "the enroll must not be sent twice");
    assert_eq!(
        sim.user("00u1abc0000000000011").numbers_of("sms"),
        vec!["+12135550211"]
    );
}

#[test]
fn rate_limited_delete_waits_for_the_servers_reset_and_retries() {
    let sim = org();
    sim.add_fault(
        Fault::new(FaultAction::RateLimited {
            limit: 100,
            reset_in_secs: 2,
        })
        .op("unenrollFactor")
        .times(1),
    );
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000011,+12135550211\n");
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &run.report()[0];
    assert_eq!(r["outcome"], "updated");
    assert_eq!(r["attempts"], "4", "list, delete (429), delete, enroll");
    let reqs = sim.requests();
    let deletes: Vec<_> = reqs.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 2);
    assert_eq!(deletes[0].status, 429);
    // The retry came no earlier than the reset (2 s after the 429's Date,
    // which is truncated to the second: at least 1 s after it was sent).
    assert!(
        deletes[1].t_start_ms >= deletes[0].t_end_ms + 1000,
        "{deletes:?}"
    );
}

#[test]
fn bad_token_stops_the_run_with_a_hint_and_never_prints_the_token() {
    let sim = org();
    let run = Run::new();
    let mut csv = String::from("user,phone\n");
    for i in 50..70 {
        csv.push_str(&format!("00u1abc00000000000{i},+121355502{i}\n"));
    }
    let input = run.write("in.csv", &csv);
    let mut c = run.cmd();
    c.env("OKTA_CLIENT_TOKEN", "wrong-token-value-123")
        .args([
            "apply",
            "--activate",
            "--org-url",
            &sim.url(),
            "--report",
            "report.csv",
            "--input",
        ])
        .arg(&input);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("401") && err.contains("hint:"), "{err}");
    assert!(
        !err.contains("wrong-token-value-123") && !stdout(&out).contains("wrong-token-value-123")
    );
    let report = std::fs::read_to_string(run.path("report.csv")).unwrap();
    assert!(!report.contains("wrong-token-value-123"));
    assert!(sim.writes().is_empty());
    let rep = run.report();
    assert_eq!(rep.len(), 20);
    assert!(
        rep.iter().any(|r| r["outcome"] == "not_attempted"),
        "{rep:?}"
    );
}

#[test]
fn activation_choice_is_required() {
    let sim = org();
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000011,+12135550211\n");
    assert_eq!(code(&run.tool("apply", &sim, &input, &[])), 2);
    assert_eq!(
        code(&run.tool("apply", &sim, &input, &["--activate", "--send-code"])),
        2
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn send_code_leaves_the_factor_pending() {
    let sim = org();
    let run = Run::new();
    let input = run.write("in.csv", "user,phone\n00u1abc0000000000011,+12135550211\n");
    let out = run.tool("apply", &sim, &input, &["--send-code"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &run.report()[0];
    assert_eq!(r["outcome"], "updated");
    assert_eq!(r["new_factor_status"], "PENDING_ACTIVATION");
    let q = sim
        .writes()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap()
        .query
        .unwrap();
    assert!(
        q.contains("activate=false") && q.contains("updatePhone=true"),
        "{q}"
    );
}

#[test]
fn logins_that_break_urls_are_encoded_or_searched() {
    let sim = Sim::with_users(vec![
        user(
            "00u1abc0000000000021",
            "pat+mfa@example.com",
            &[("sms", "+12135550121", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000022",
            "lee#ops@example.com",
            &[("sms", "+12135550122", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000023",
            "dept/kim@example.com",
            &[("sms", "+12135550123", "ACTIVE")],
        ),
        user(
            "00u1abc0000000000024",
            "q?x@example.com",
            &[("sms", "+12135550124", "ACTIVE")],
        ),
    ]);
    let run = Run::new();
    let input = run.write(
        "in.csv",
        "login,phone\npat+mfa@example.com,+12135550221\nlee#ops@example.com,+12135550222\ndept/kim@example.com,+12135550223\nq?x@example.com,+12135550224\n",
    );
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for r in run.report() {
        assert_eq!(r["outcome"], "updated", "{r:?}");
    }
    let paths: Vec<String> = sim.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.iter().any(|p| p.contains("pat%2Bmfa%40example.com")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("lee%23ops%40example.com")),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.contains("dept/kim") || p.contains("dept%2Fkim")),
        "{paths:?}"
    );
    for id in ["21", "22", "23", "24"] {
        let u = sim.user(&format!("00u1abc00000000000{id}"));
        assert_eq!(u.numbers_of("sms"), vec![format!("+121355502{id}")]);
    }
}

#[test]
fn concurrency_429s_lower_the_in_flight_count_and_every_row_ends_updated() {
    let users: Vec<_> = (30..40)
        .map(|i| {
            user(
                &format!("00u1abc00000000000{i}"),
                &format!("u{i}@example.com"),
                &[("sms", &format!("+121355501{i}"), "ACTIVE")],
            )
        })
        .collect();
    let sim = Sim::start(
        SimConfig {
            concurrency: 3,
            rate_limit: 100_000,
            latency: std::time::Duration::from_millis(50),
            ..SimConfig::default()
        },
        json!({ "users": users }),
    );
    let run = Run::new();
    let mut csv = String::from("user,phone\n");
    for i in 30..40 {
        csv.push_str(&format!("00u1abc00000000000{i},+121355502{i}\n"));
    }
    let input = run.write("in.csv", &csv);
    let started = std::time::Instant::now();
    let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "8"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for r in run.report() {
        assert_eq!(r["outcome"], "updated", "{r:?}");
    }
    // The concurrency 429 carries a reset a minute away; the tool must not
    // wait for it.
    assert!(started.elapsed() < std::time::Duration::from_secs(50));
    assert!(
        sim.requests().iter().any(|r| r.status == 429),
        "the limit was never hit"
    );
}

#[test]
fn non_utf8_input_is_refused_before_any_request() {
    let sim = org();
    let run = Run::new();
    let p = run.path("latin1.csv");
    std::fs::write(&p, b"user,phone\nJos\xe9@example.com,+12135550211\n").unwrap();
    let out = run.tool("apply", &sim, &p, &["--activate"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert!(sim.requests().is_empty());
    assert!(!run.path("report.csv").exists());
}

// Pins: every enroll refused (role can delete but not enroll, SMS off by
// policy): the first changes run one at a time, each is put back, and the
// run stops after three instead of touching every user.
#[test]
fn an_org_wide_enroll_refusal_stops_after_three_restores() {
    let users: Vec<_> = (40..60)
        .map(|i| {
            user(
                &format!("00u1abc00000000000{i}"),
                &format!("w{i}@example.com"),
                &[("sms", &format!("+121355501{i}"), "ACTIVE")],
            )
        })
        .collect();
    let sim = Sim::with_users(users);
    // Refuse only the new numbers (+1 310 ...): restores of the old ones work.
    for i in 40..60 {
        sim.add_fault(
            Fault::new(FaultAction::Respond {
                status: 400,
                error_code: "E0000001".into(),
                error_summary: "Api validation failed: factorEnrollRequest".into(),
                error_causes: vec!["SMS is not allowed by policy (simulated).".into()],
            })
            .op("enrollFactor")
            .phone(&format!("+131055501{i}")),
        );
    }
    let run = Run::new();
    let mut csv = String::from("user,phone\n");
    for i in 40..60 {
        csv.push_str(&format!("00u1abc00000000000{i},+131055501{i}\n"));
    }
    let input = run.write("in.csv", &csv);
    let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "8"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(rep.len(), 20);
    let restored = rep
        .iter()
        .filter(|r| r["outcome"] == "failed_restored")
        .count();
    assert_eq!(restored, 3, "{rep:#?}");
    assert!(
        rep.iter()
            .all(|r| r["outcome"] == "failed_restored" || r["outcome"] == "not_attempted")
    );
    assert_eq!(
        sim.writes().iter().filter(|r| r.method == "DELETE").count(),
        3
    );
    for i in 40..60 {
        let u = sim.user(&format!("00u1abc00000000000{i}"));
        assert_eq!(u.numbers_of("sms"), vec![format!("+121355501{i}")]);
    }
    assert!(stderr(&out).contains("org-wide"), "{}", stderr(&out));
}

// Pins: an org that cannot be reached is one problem, not one per row:
// the run stops with a hint instead of failing every row.
#[test]
fn an_unreachable_org_stops_the_run_with_a_hint() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = Run::new();
    let mut csv = String::from("user,phone\n");
    for i in 50..70 {
        csv.push_str(&format!("00u1abc00000000000{i},+121355502{i}\n"));
    }
    let input = run.write("in.csv", &csv);
    let mut c = run.cmd();
    c.args(["apply", "--activate", "--report", "report.csv", "--input"])
        .arg(&input)
        .args(["--org-url", &format!("http://127.0.0.1:{port}")]);
    let out = c.output().unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could not be reached"),
        "{}",
        stderr(&out)
    );
    let rep = run.report();
    assert_eq!(rep.len(), 20);
    let failed = rep.iter().filter(|r| r["outcome"] == "failed").count();
    assert!(failed <= 8, "at most the rows in flight fail: {failed}");
    assert!(rep.iter().any(|r| r["outcome"] == "not_attempted"));
}
