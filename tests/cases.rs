//! Real-world cases, one test per kind of fault: the real binary against
//! the simulator on 127.0.0.1, the input written here, the right outcome
//! asserted on the report, the request log and the simulator's state.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use okta_phone_migrate::simulator::{
    Fault, FaultAction, LoggedRequest, SimConfig, SimSettings, UserSnapshot,
};
use serde_json::{Value, json};

fn id(n: u32) -> String {
    format!("00u1abc00000000000{n:02}")
}

/// A user with phone factors `(type, number, status, extension)`.
fn phone_user(n: u32, login: &str, factors: &[(&str, &str, &str, Option<&str>)]) -> Value {
    let factors: Vec<Value> = factors
        .iter()
        .map(|(t, num, st, ext)| {
            let mut profile = json!({ "phoneNumber": num });
            if let Some(e) = ext {
                profile["phoneExtension"] = json!(e);
            }
            json!({"factorType": t, "provider": "OKTA", "status": st, "profile": profile})
        })
        .collect();
    json!({
        "id": id(n),
        "status": "ACTIVE",
        "profile": {"login": login, "email": login, "firstName": "Case", "lastName": format!("U{n}")},
        "factors": factors,
    })
}

fn sms_user(n: u32, login: &str) -> Value {
    phone_user(
        n,
        login,
        &[("sms", &format!("+121355501{n:02}"), "ACTIVE", None)],
    )
}

fn of_user<'a>(reqs: &'a [LoggedRequest], user_id: &str) -> Vec<&'a LoggedRequest> {
    reqs.iter().filter(|r| r.path.contains(user_id)).collect()
}

fn factor_of(u: &UserSnapshot, t: &str) -> (String, String, String) {
    let f = u
        .factors_of(t)
        .next()
        .unwrap_or_else(|| panic!("{} has no {t} factor: {u:?}", u.id));
    (
        f.id.clone(),
        f.phone_number().unwrap_or_default().to_string(),
        f.status.clone(),
    )
}

/// Whether a request counts against Okta's `/api/v1/users` bucket (list and
/// search users, every factor call).
fn in_users_bucket(r: &LoggedRequest) -> bool {
    r.path.trim_end_matches('/') == "/api/v1/users" || r.path.contains("/factors")
}

// Fault pinned: a login with URL-significant characters is cut, turned into
// another path, or read as a space, so the wrong user (or none) is touched.
#[test]
fn logins_with_url_characters_reach_the_right_user() {
    let logins = [
        (21, "pat+mfa@example.com", "pat%2Bmfa%40example.com"),
        (22, "lee#ops@example.com", "lee%23ops%40example.com"),
        (23, "dept/kim@example.com", ""),
        (24, "ops/pat+2@example.com", ""),
        (25, "100%off@example.com", "100%25off%40example.com"),
        (26, "a&b=c;d@example.com", "a%26b%3Dc%3Bd%40example.com"),
        (27, "jos\u{e9}@example.com", "jos%C3%A9%40example.com"),
        (28, "sales/\"vip\"@example.com", ""),
        (29, "what?now@example.com", ""),
    ];
    let mut users: Vec<Value> = logins.iter().map(|(n, l, _)| sms_user(*n, l)).collect();
    // Decoys the broken forms would hit: `pat mfa`, `lee`, `dept`, `kim`.
    users.push(sms_user(31, "pat mfa@example.com"));
    users.push(sms_user(32, "lee"));
    users.push(sms_user(33, "dept"));
    users.push(sms_user(34, "kim@example.com"));
    let sim = Sim::with_users(users);
    let run = Run::new();
    let mut csv = String::from("login,phone\n");
    for (n, login, _) in &logins {
        let cell = login.replace('"', "\"\"");
        csv.push_str(&format!("\"{cell}\",+121355502{n:02}\n"));
    }
    let input = run.write("in.csv", &csv);
    let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "8"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rep = run.report();
    for (i, (n, login, _)) in logins.iter().enumerate() {
        let r = row(&rep, i as u64 + 1);
        assert_eq!(r["outcome"], "updated", "{login}: {r:?}");
        assert_eq!(r["user_id"], id(*n), "{login}");
        assert_eq!(
            sim.user(&id(*n)).numbers_of("sms"),
            vec![format!("+121355502{n:02}")],
            "{login}"
        );
    }
    for decoy in [31, 32, 33, 34] {
        assert_eq!(
            sim.user(&id(decoy)).numbers_of("sms"),
            vec![format!("+121355501{decoy}")],
            "decoy {decoy} was touched"
        );
    }
    let reqs = sim.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    for (_, login, encoded) in &logins {
        if encoded.is_empty() {
            // `/` and `?` logins cannot be fetched by login: an exact search.
            let local = login.split(['/', '?']).next().unwrap();
            assert!(
                !paths.iter().any(|p| p.contains(&format!("/users/{local}"))
                    || p.contains(&format!("/users/{}", local.replace('/', "%2F")))),
                "{login} was sent as a path: {paths:?}"
            );
        } else {
            assert!(
                paths
                    .iter()
                    .any(|p| p.ends_with(&format!("/users/{encoded}"))),
                "{login} not fetched as {encoded}: {paths:?}"
            );
        }
    }
    // Nothing raw that a server would split or decode differently.
    for p in &paths {
        assert!(
            !p.contains('+') && !p.contains('#') && !p.contains(' ') && p.is_ascii(),
            "unencoded path {p}"
        );
    }
    // Searches carry `+` as %2B, never as a space.
    let searches: Vec<String> = reqs
        .iter()
        .filter(|r| r.path == "/api/v1/users")
        .filter_map(|r| r.query.clone())
        .collect();
    assert!(
        searches.iter().any(|q| q.contains("pat%2B2")),
        "{searches:?}"
    );
    assert!(
        searches.iter().all(|q| !q.contains("pat+2")),
        "{searches:?}"
    );
}

// Fault pinned: a change that is not exactly list → delete that factor →
// enroll with updatePhone=true, or a re-run that writes again.
#[test]
fn the_sequence_is_exact_and_a_rerun_writes_nothing() {
    let sim = Sim::with_users(vec![
        sms_user(13, "cy@example.com"),
        phone_user(
            14,
            "di@example.com",
            &[("call", "+12135550114", "ACTIVE", Some("42"))],
        ),
        sms_user(15, "ed@example.com"),
    ]);
    let cases: [(&str, u32, &str, &str, &[&str]); 3] = [
        ("sms", 13, "+12135550213", "(213) 555-0213", &["--activate"]),
        (
            "call",
            14,
            "+12135550214",
            "+1 213-555-0214",
            &["--activate", "--factor-type", "call"],
        ),
        ("sms", 15, "+12135550215", "2135550215", &["--send-code"]),
    ];
    let run = Run::new();
    for (i, (ft, n, new, reformatted, flags)) in cases.iter().enumerate() {
        let uid = id(*n);
        let (old_id, old_number, _) = factor_of(&sim.user(&uid), ft);
        let first = run.write(&format!("a{i}.csv"), &format!("user,phone\n{uid},{new}\n"));
        sim.clear_requests();
        let out = run.tool_to(&format!("a{i}-report.csv"), "apply", &sim, &first, flags);
        assert_eq!(code(&out), 0, "{ft}: {}", stderr(&out));
        let reqs = sim.requests();
        let calls: Vec<(String, String)> = reqs
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect();
        let factors = format!("/api/v1/users/{uid}/factors");
        assert_eq!(
            calls,
            vec![
                ("GET".to_string(), factors.clone()),
                ("DELETE".to_string(), format!("{factors}/{old_id}")),
                ("POST".to_string(), factors.clone()),
            ],
            "{ft}"
        );
        let enroll = &reqs[2];
        let q = enroll.query.clone().unwrap_or_default();
        assert!(q.contains("updatePhone=true"), "{q}");
        let activate = flags.contains(&"--activate");
        assert!(q.contains(&format!("activate={activate}")), "{q}");
        let body = enroll.body.clone().unwrap();
        assert_eq!(body["factorType"], json!(ft));
        assert_eq!(body["profile"]["phoneNumber"], json!(new));
        if *ft == "call" {
            // The extension belongs to the row (none here), not to the old number.
            assert!(body["profile"].get("phoneExtension").is_none(), "{body}");
        }

        let (new_id, number, status) = factor_of(&sim.user(&uid), ft);
        assert_eq!(&number, new);
        let r = &read_report(&run.path(&format!("a{i}-report.csv")))[0];
        assert_eq!(r["outcome"], "updated");
        assert_eq!(r["old_phone"], old_number);
        assert_eq!(r["new_phone"], *new);
        assert_eq!(r["old_factor_id"], old_id);
        assert_eq!(r["new_factor_id"], new_id);
        assert_eq!(r["new_factor_status"], status);
        assert_eq!(r["attempts"], "3");
        let otps = sim.sent_otps().len();

        // Same sheet again, the number written another way: nothing to do.
        let again = run.write(
            &format!("b{i}.csv"),
            &format!("user,phone\n{uid},{reformatted}\n"),
        );
        sim.clear_requests();
        let out = run.tool_to(&format!("b{i}-report.csv"), "apply", &sim, &again, flags);
        assert_eq!(code(&out), 0, "{ft}: {}", stderr(&out));
        let r = &read_report(&run.path(&format!("b{i}-report.csv")))[0];
        assert_eq!(r["outcome"], "unchanged", "{ft}: {r:?}");
        assert_eq!(r["new_factor_id"], new_id);
        assert!(sim.writes().is_empty(), "{ft}: {:?}", sim.writes());
        assert_eq!(sim.requests().len(), 1, "{ft}: one list");
        assert_eq!(sim.sent_otps().len(), otps, "{ft}: a re-run sent a code");
        assert_eq!(factor_of(&sim.user(&uid), ft).0, new_id);
    }
}

// Fault pinned: one user named twice (by id, login, another case or
// another way of writing the number) is changed twice, or changed at all
// when the rows disagree — even when the rows resolve concurrently.
#[test]
fn one_user_named_twice_is_one_update_or_a_conflict_at_concurrency_8() {
    for login_first in [false, true] {
        let mut users = vec![
            phone_user(
                15,
                "sam@example.com",
                &[("sms", "+12135550105", "ACTIVE", None)],
            ),
            phone_user(
                16,
                "lu@example.com",
                &[("sms", "+12135550106", "ACTIVE", None)],
            ),
        ];
        for n in 40..52 {
            users.push(sms_user(n, &format!("u{n}@example.com")));
        }
        let sim = Sim::start(
            SimConfig {
                latency: Duration::from_millis(20),
                ..SimConfig::default()
            },
            json!({ "users": users }),
        );
        let run = Run::new();
        let (a, b) = if login_first {
            (
                "sam@example.com,+12135550115",
                "00u1abc0000000000015,+12135550115",
            )
        } else {
            (
                "00u1abc0000000000015,+12135550115",
                "sam@example.com,+12135550115",
            )
        };
        let mut csv = format!(
            "user,phone\n{a}\n00u1abc0000000000016,+12135550116\n{b}\n\
             00u1abc0000000000016,+12135550199\nSAM@Example.COM,(213) 555-0115\nlu@example.com,+12135550116\n"
        );
        for n in 40..52 {
            csv.push_str(&format!("u{n}@example.com,+121355502{n}\n"));
        }
        let input = run.write("in.csv", &csv);
        let out = run.tool("apply", &sim, &input, &["--activate", "--concurrency", "8"]);
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let rep = run.report();
        assert_eq!(rep.len(), 18);
        assert_eq!(row(&rep, 1)["outcome"], "updated");
        for dup in [3, 5] {
            let r = row(&rep, dup);
            assert_eq!(r["outcome"], "duplicate", "{r:?}");
            assert!(r["detail"].contains("row 1"), "{r:?}");
        }
        for c in [2, 4, 6] {
            assert_eq!(row(&rep, c)["outcome"], "conflict", "{:?}", row(&rep, c));
        }
        for n in 7..=18 {
            assert_eq!(row(&rep, n)["outcome"], "updated");
        }
        let reqs = sim.requests();
        let writes = |uid: &str| -> Vec<String> {
            of_user(&reqs, uid)
                .into_iter()
                .filter(|r| r.method != "GET")
                .map(|r| r.method.clone())
                .collect()
        };
        assert_eq!(writes(&id(15)), ["DELETE", "POST"]);
        assert!(writes(&id(16)).is_empty(), "{:?}", writes(&id(16)));
        assert_eq!(sim.user(&id(16)).numbers_of("sms"), ["+12135550106"]);
        assert_eq!(sim.user(&id(15)).numbers_of("sms"), ["+12135550115"]);
    }
}

// Fault pinned: the other phone factor on the old number is silently left
// holding it (or silently replaced without being asked).
#[test]
fn the_other_phone_factor_on_the_old_number_is_reported_or_swapped() {
    let org = || {
        Sim::with_users(vec![
            phone_user(
                40,
                "both@example.com",
                &[
                    ("sms", "+12135550140", "ACTIVE", None),
                    ("call", "+12135550140", "ACTIVE", None),
                ],
            ),
            // A call factor on another number is none of the row's business.
            phone_user(
                41,
                "apart@example.com",
                &[
                    ("sms", "+12135550141", "ACTIVE", None),
                    ("call", "+12135550177", "ACTIVE", None),
                ],
            ),
            // Replacing the call factor: the sms twin is the other one.
            phone_user(
                42,
                "voice@example.com",
                &[
                    ("call", "+12135550142", "ACTIVE", None),
                    ("sms", "+12135550142", "ACTIVE", None),
                ],
            ),
        ])
    };
    let sheet = "user,phone\nboth@example.com,+12135550240\napart@example.com,+12135550241\n";

    // Default: the sms is swapped; the report warns about the call factor.
    let sim = org();
    let run = Run::new();
    let input = run.write("in.csv", sheet);
    let out = run.tool("apply", &sim, &input, &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(row(&rep, 1)["outcome"], "updated");
    assert!(
        row(&rep, 1)["detail"].contains("call factor still holds the old number"),
        "{:?}",
        row(&rep, 1)
    );
    assert!(
        !row(&rep, 2)["detail"].contains("call"),
        "{:?}",
        row(&rep, 2)
    );
    let u = sim.user(&id(40));
    assert_eq!(u.numbers_of("sms"), ["+12135550240"]);
    assert_eq!(u.numbers_of("call"), ["+12135550140"]);
    assert_eq!(sim.user(&id(41)).numbers_of("call"), ["+12135550177"]);

    // The same for --factor-type call: the sms factor is the twin.
    let input = run.write("call.csv", "user,phone\nvoice@example.com,+12135550242\n");
    let out = run.tool_to(
        "call.csv.report",
        "apply",
        &sim,
        &input,
        &["--activate", "--factor-type", "call"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &read_report(&run.path("call.csv.report"))[0];
    assert_eq!(r["outcome"], "updated");
    assert!(
        r["detail"].contains("sms factor still holds the old number"),
        "{r:?}"
    );
    let u = sim.user(&id(42));
    assert_eq!(u.numbers_of("call"), ["+12135550242"]);
    assert_eq!(u.numbers_of("sms"), ["+12135550142"]);

    // --also-call: plan shows both, apply swaps both.
    let sim = org();
    let run = Run::new();
    let input = run.write("in.csv", sheet);
    let out = run.tool("plan", &sim, &input, &["--also-call"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &run.report()[0];
    assert_eq!(r["outcome"], "would_update");
    assert!(
        r["detail"].contains("would also replace the call factor"),
        "{r:?}"
    );
    assert!(stdout(&out).contains("call"), "{}", stdout(&out));
    assert!(sim.writes().is_empty());
    let out = run.tool_to(
        "apply.csv",
        "apply",
        &sim,
        &input,
        &["--activate", "--also-call"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rep = read_report(&run.path("apply.csv"));
    assert_eq!(row(&rep, 1)["outcome"], "updated");
    assert!(row(&rep, 1)["detail"].contains("call factor on the old number was replaced"));
    let u = sim.user(&id(40));
    assert_eq!(u.numbers_of("sms"), ["+12135550240"]);
    assert_eq!(u.numbers_of("call"), ["+12135550240"]);
    assert_eq!(
        sim.user(&id(41)).numbers_of("call"),
        ["+12135550177"],
        "--also-call touched a call factor on another number"
    );
}

// Fault pinned: an org-wide 429 retried before the reset (or after a wait
// computed from a wrong local clock), or other requests sent into the
// exhausted bucket meanwhile.
#[test]
fn an_org_wide_429_waits_for_the_reset_by_the_servers_clock() {
    for skew in [-300i64, 300] {
        let users: Vec<Value> = (60..66)
            .map(|n| sms_user(n, &format!("r{n}@example.com")))
            .collect();
        let sim = Sim::with_users(users);
        sim.set_settings(SimSettings {
            capture: true,
            clock_skew_secs: skew,
        });
        sim.add_fault(
            Fault::new(FaultAction::RateLimited {
                limit: 100,
                reset_in_secs: 7,
            })
            .op("unenrollFactor")
            .user(&id(61))
            .times(1),
        );
        let run = Run::new();
        let mut csv = String::from("user,phone\n");
        for n in 60..66 {
            csv.push_str(&format!("{},+121355502{n}\n", id(n)));
        }
        let input = run.write("in.csv", &csv);
        let started = Instant::now();
        let out = run.tool(
            "apply",
            &sim,
            &input,
            &[
                "--activate",
                "--concurrency",
                "8",
                "--summary-json",
                "s.json",
            ],
        );
        assert_eq!(code(&out), 0, "skew {skew}: {}", stderr(&out));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "skew {skew}: waited {:?}",
            started.elapsed()
        );
        let rep = run.report();
        for r in &rep {
            assert_eq!(r["outcome"], "updated", "{r:?}");
        }
        let r = rep.iter().find(|r| r["user_id"] == id(61)).unwrap();
        assert_eq!(r["attempts"], "4", "list, delete (429), delete, enroll");
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(run.path("s.json")).unwrap()).unwrap();
        assert_eq!(summary["throttled"], json!(1), "{summary}");

        let reqs = sim.requests();
        let deletes: Vec<&LoggedRequest> = of_user(&reqs, &id(61))
            .into_iter()
            .filter(|r| r.method == "DELETE")
            .collect();
        assert_eq!(deletes.len(), 2, "retried exactly once: {deletes:?}");
        let (first, retry) = (deletes[0], deletes[1]);
        assert_eq!(first.status, 429);
        let headers = &first.exchange.as_ref().unwrap().response_headers;
        let reset: u64 = headers["x-rate-limit-reset"].parse().unwrap();
        let date = httpdate::parse_http_date(&headers["date"]).unwrap();
        let date_secs = date
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(reset, date_secs + 7, "the 429 under test");
        assert!(
            retry.server_time_ms >= reset * 1000,
            "skew {skew}: retried at {} before the reset {}",
            retry.server_time_ms,
            reset * 1000
        );
        assert!(
            retry.server_time_ms < (reset + 5) * 1000,
            "skew {skew}: waited far past the reset"
        );
        // Nothing else went to the bucket between the 429 and the retry
        // (a request already on its way when the 429 left is allowed).
        let between: Vec<&LoggedRequest> = reqs
            .iter()
            .filter(|r| in_users_bucket(r) && r.seq != retry.seq)
            .filter(|r| r.t_start_ms > first.t_end_ms + 50 && r.t_start_ms < retry.t_start_ms)
            .collect();
        assert!(
            between.is_empty(),
            "skew {skew}: 429 {}..{}, retry at {}: {:?}",
            first.t_start_ms,
            first.t_end_ms,
            retry.t_start_ms,
            between
                .iter()
                .map(|r| (r.t_start_ms, &r.method, &r.path, r.status))
                .collect::<Vec<_>>()
        );
    }
}

// Fault pinned: Okta's concurrency 429 (limit and remaining 0, reset a
// minute away) read as a rate limit — a minute's stall — or retried at the
// same width forever.
#[test]
fn concurrency_429s_narrow_the_run_briefly_whatever_the_request() {
    let users: Vec<Value> = (70..80)
        .map(|n| sms_user(n, &format!("c{n}@example.com")))
        .collect();
    let sim = Sim::start(
        SimConfig {
            concurrency: 3,
            rate_limit: 100_000,
            latency: Duration::from_millis(60),
            ..SimConfig::default()
        },
        json!({ "users": users }),
    );
    let run = Run::new();
    // Logins: the lookups (their own bucket) meet the limit too.
    let mut csv = String::from("user,phone\n");
    for n in 70..80 {
        csv.push_str(&format!("c{n}@example.com,+121355502{n}\n"));
    }
    let input = run.write("in.csv", &csv);
    let started = Instant::now();
    let out = run.tool(
        "apply",
        &sim,
        &input,
        &[
            "--activate",
            "--concurrency",
            "8",
            "--summary-json",
            "s.json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "backed off for {:?}",
        started.elapsed()
    );
    for r in run.report() {
        assert_eq!(r["outcome"], "updated", "{r:?}");
    }
    let reqs = sim.requests();
    let refused: Vec<&LoggedRequest> = reqs.iter().filter(|r| r.status == 429).collect();
    assert!(!refused.is_empty(), "the limit was never hit");
    assert!(
        refused
            .iter()
            .any(|r| r.method == "GET" && !r.path.contains("/factors"))
            || refused.iter().any(|r| r.path.contains("/factors")),
        "{refused:?}"
    );
    // Narrowing works: far fewer refusals than a run that kept 8 in flight
    // against 3 (which loses most of every wave).
    let served = reqs.len() - refused.len();
    assert!(
        refused.len() < served,
        "{} refused for {served} served",
        refused.len()
    );
    assert!(
        stderr(&out).contains("fewer requests in flight"),
        "{}",
        stderr(&out)
    );
    // No enroll was sent twice for a user: a 429 means it was not applied.
    let mut posts: HashMap<String, usize> = HashMap::new();
    for r in reqs
        .iter()
        .filter(|r| r.method == "POST" && r.status == 200)
    {
        *posts.entry(r.path.clone()).or_default() += 1;
    }
    assert!(posts.values().all(|&n| n == 1), "{posts:?}");
}

// Fault pinned: an enroll refused after the delete is retried blindly, or
// leaves the user without the factor, or hides that it did.
#[test]
fn a_refused_enroll_after_the_delete_is_restored_or_reported_loudly() {
    let sim = Sim::with_users(vec![
        sms_user(35, "t35@example.com"),
        sms_user(36, "t36@example.com"),
        sms_user(37, "t37@example.com"),
        sms_user(38, "t38@example.com"),
        phone_user(
            39,
            "t39@example.com",
            &[("call", "+12135550139", "ACTIVE", Some("77"))],
        ),
        sms_user(34, "t34@example.com"),
    ]);
    let invalid = |n: u32, phone: &str| {
        Fault::new(FaultAction::Respond {
            status: 400,
            error_code: "E0000001".into(),
            error_summary: "Api validation failed: factorEnrollRequest".into(),
            error_causes: vec!["Invalid Phone Number.".into()],
        })
        .op("enrollFactor")
        .user(&id(n))
        .phone(phone)
    };
    // The case: toll-free refused with E0000001's cause.
    sim.add_fault(invalid(35, "+18005550135"));
    // US/Canada-only org.
    sim.add_fault(
        Fault::respond(403, "E0000099", "Only US and Canada numbers are allowed.")
            .op("enrollFactor")
            .user(&id(37))
            .phone("+12135550237"),
    );
    // The new number and the restore both refused.
    sim.add_fault(
        Fault::respond(400, "E0000098", "This phone number is invalid.")
            .op("enrollFactor")
            .user(&id(38)),
    );
    // Call factor: refused, and restored with its extension.
    sim.add_fault(invalid(39, "+12135550239").factor_type("call"));
    let run = Run::new();
    let input = run.write(
        "in.csv",
        &format!(
            "user,phone\n{},+18005550135\n{},+18885550136\n{},+12135550237\n{},+18005550134\n{},+12135550238\n",
            id(35),
            id(36),
            id(37),
            id(34),
            id(38)
        ),
    );
    let out = run.tool(
        "apply",
        &sim,
        &input,
        // One row at a time: the user left without a factor (last row)
        // stops the run, so it must come after the others.
        &[
            "--activate",
            "--summary-json",
            "s.json",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rep = run.report();
    // (row, user, status, code, cause): 36 and 34 are refused by the
    // simulator itself (toll-free: E0000098, no cause).
    let expected = [
        (1, 35, "400", "E0000001", "Invalid Phone Number."),
        (2, 36, "400", "E0000098", ""),
        (3, 37, "403", "E0000099", ""),
        (4, 34, "400", "E0000098", ""),
    ];
    let reqs = sim.requests();
    for (r, n, status, ecode, cause) in expected {
        let line = row(&rep, r);
        assert_eq!(line["outcome"], "failed_restored", "{line:?}");
        assert_eq!(line["http_status"], status, "{line:?}");
        assert_eq!(line["error_code"], ecode, "{line:?}");
        assert_eq!(line["error_causes"], cause, "{line:?}");
        assert_eq!(line["old_phone"], format!("+121355501{n}"));
        let (_, number, st) = factor_of(&sim.user(&id(n)), "sms");
        assert_eq!(
            (number.as_str(), st.as_str()),
            (line["old_phone"].as_str(), "ACTIVE")
        );
        let posts = of_user(&reqs, &id(n))
            .into_iter()
            .filter(|q| q.method == "POST")
            .count();
        assert_eq!(posts, 2, "user {n}: the new number once, the restore once");
    }
    // Last, because a user left without the factor stops the run.
    let lost = row(&rep, 5);
    assert_eq!(lost["outcome"], "failed_unrestored");
    assert_eq!(lost["old_phone"], "+12135550138");
    assert!(sim.user(&id(38)).factors_of("sms").next().is_none());
    assert!(stderr(&out).contains("NO FACTOR"), "{}", stderr(&out));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.path("s.json")).unwrap()).unwrap();
    assert_eq!(summary["unrestored_rows"], json!([5]));
    assert_eq!(summary["outcomes"]["failed_unrestored"], json!(1));
    assert_eq!(summary["exit_code"], json!(3));

    // Another factor type: the call factor comes back with its extension.
    let input = run.write(
        "call.csv",
        &format!("user,phone\n{},+12135550239\n", id(39)),
    );
    let out = run.tool_to(
        "call-report.csv",
        "apply",
        &sim,
        &input,
        &["--activate", "--factor-type", "call"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = &read_report(&run.path("call-report.csv"))[0];
    assert_eq!(r["outcome"], "failed_restored", "{r:?}");
    assert_eq!(r["error_causes"], "Invalid Phone Number.");
    let u = sim.user(&id(39));
    let f = u.factors_of("call").next().unwrap();
    assert_eq!(f.phone_number(), Some("+12135550139"));
    assert_eq!(f.phone_extension(), Some("77"));
    assert_eq!(f.status, "ACTIVE");
}
