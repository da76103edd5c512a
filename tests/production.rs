//! Running against a production org: configuration sources and their
//! precedence, staged rollout (--limit, --rows, --only-users), the circuit
//! breaker, --update-profile, logs for cron and SIEMs, masking, plan's
//! JSON output. The real binary against the simulator on 127.0.0.1.

mod common;

use std::process::Output;

use common::*;
use okta_phone_migrate::simulator::{Fault, FaultAction, SimConfig};
use serde_json::{Value, json};

fn uid(i: usize) -> String {
    format!("00u1prd{i:013}")
}

fn old(i: usize) -> String {
    format!("+1213555{:04}", 3000 + i)
}

fn new(i: usize) -> String {
    format!("+1213555{:04}", 4000 + i)
}

fn org(n: usize) -> Sim {
    org_with(n, SimConfig::default())
}

fn org_with(n: usize, cfg: SimConfig) -> Sim {
    let users: Vec<Value> = (1..=n)
        .map(|i| {
            user(
                &uid(i),
                &format!("p{i}@example.com"),
                &[("sms", &old(i), "ACTIVE")],
            )
        })
        .collect();
    Sim::start(cfg, json!({ "users": users }))
}

fn input(run: &Run, n: usize) -> std::path::PathBuf {
    let mut s = String::from("user,new_phone\n");
    for i in 1..=n {
        s.push_str(&format!("{},{}\n", uid(i), new(i)));
    }
    run.write("in.csv", &s)
}

fn outcomes(run: &Run, report: &str) -> Vec<String> {
    read_report(&run.path(report))
        .into_iter()
        .map(|r| r["outcome"].clone())
        .collect()
}

fn config_show(run: &Run, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = run.cmd();
    c.env_remove("OKTA_CLIENT_TOKEN")
        .args(["config", "show"])
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn line_of<'a>(text: &'a str, setting: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(setting))
        .unwrap_or_else(|| panic!("no {setting} line in:\n{text}"))
}

fn private(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let _ = path;
}

#[test]
fn settings_come_from_flags_then_env_then_config_then_okta_yaml() {
    let run = Run::new();
    std::fs::create_dir_all(run.path(".okta")).unwrap();
    let home_yaml = run.write(
        ".okta/okta.yaml",
        "okta:\n  client:\n    orgUrl: https://home.okta.com\n    token: home-secret-token-123\n    rateLimit:\n      maxRetries: 2\n",
    );
    private(&home_yaml);
    // The working directory is the run's folder: ./.okta.yaml wins over
    // the home file.
    run.write(
        ".okta.yaml",
        "okta:\n  client:\n    orgUrl: https://project.okta.com\n",
    );
    run.write(
        "tool.yaml",
        "orgUrl: https://tool.okta.com\nrateShare: 25%\nconcurrency: 4\ndefaultRegion: GB\nmaxFailures: 10%\n",
    );

    let out = config_show(&run, &[], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(line_of(&text, "org_url").contains("https://project.okta.com"));
    assert!(line_of(&text, "org_url").contains(".okta.yaml"));
    let token = line_of(&text, "token");
    assert!(
        token.contains("********") && token.contains("okta.yaml"),
        "{token}"
    );
    assert!(!text.contains("home-secret-token-123"), "{text}");
    assert!(line_of(&text, "concurrency").contains("(default)"));

    // The Node/.NET name for the project file loses to the Go/CLI one but
    // wins over the home file.
    run.write(
        "okta.yaml",
        "okta:\n  client:\n    orgUrl: https://node-style.okta.com\n    clientId: 0oa1fromnodestyle\n",
    );
    let out = config_show(&run, &[], &[]);
    let text = stdout(&out);
    assert!(
        line_of(&text, "org_url").contains("https://project.okta.com"),
        "{text}"
    );
    assert!(
        line_of(&text, "client_id").contains("0oa1fromnodestyle"),
        "{text}"
    );
    let out = config_show(&run, &["--config", "tool.yaml"], &[]);
    let text = stdout(&out);
    assert!(
        line_of(&text, "org_url").contains("https://tool.okta.com"),
        "{text}"
    );
    assert!(line_of(&text, "rate_share").contains("25%"));
    assert!(line_of(&text, "concurrency").contains("tool.yaml"));
    assert!(line_of(&text, "default_region").contains("GB"));
    assert!(line_of(&text, "max_failures").contains("10%"));

    let out = config_show(
        &run,
        &["--config", "tool.yaml"],
        &[
            ("OKTA_CLIENT_ORGURL", "https://env.okta.com"),
            ("OKTA_PHONE_MIGRATE_CONCURRENCY", "6"),
        ],
    );
    let text = stdout(&out);
    assert!(
        line_of(&text, "org_url").contains("env OKTA_CLIENT_ORGURL"),
        "{text}"
    );
    assert!(line_of(&text, "concurrency").contains("6"));

    let out = config_show(
        &run,
        &[
            "--config",
            "tool.yaml",
            "--org-url",
            "https://flag.okta.com",
            "--concurrency",
            "2",
        ],
        &[("OKTA_CLIENT_ORGURL", "https://env.okta.com")],
    );
    let text = stdout(&out);
    assert!(
        line_of(&text, "org_url").contains("https://flag.okta.com"),
        "{text}"
    );
    assert!(line_of(&text, "org_url").contains("flag --org-url"));
    assert!(line_of(&text, "concurrency").contains("flag --concurrency"));
    assert!(!text.contains("home-secret-token-123"));
}

#[test]
fn an_okta_yaml_holding_a_token_must_be_private() {
    let run = Run::new();
    std::fs::create_dir_all(run.path(".okta")).unwrap();
    let p = run.write(
        ".okta/okta.yaml",
        "okta:\n  client:\n    orgUrl: https://home.okta.com\n    token: leaky-token-456\n",
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = config_show(&run, &[], &[]);
        assert_eq!(code(&out), 2);
        assert!(
            stderr(&out).contains(&format!("chmod 600 {}", p.display())),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("leaky-token-456"));
    }
    let _ = p;
}

#[test]
fn a_typo_in_the_config_file_is_named() {
    let run = Run::new();
    run.write("tool.yaml", "rateshare: 25%\n");
    let out = config_show(&run, &["--config", "tool.yaml"], &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("rateshare"), "{}", stderr(&out));
}

#[test]
fn a_canary_with_limit_then_resume_does_the_rest() {
    let sim = org(6);
    let run = Run::new();
    let inp = input(&run, 6);
    let out = run.tool("apply", &sim, &inp, &["--activate", "--limit", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rep = run.report();
    assert_eq!(rep.len(), 6, "one line per row");
    assert_eq!(
        outcomes(&run, "report.csv"),
        [
            "updated",
            "updated",
            "not_selected",
            "not_selected",
            "not_selected",
            "not_selected"
        ]
    );
    // Rows left out cost no request at all.
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.path.contains(&uid(1)) || r.path.contains(&uid(2))),
        "{:?}",
        sim.requests()
    );
    assert_eq!(sim.user(&uid(3)).numbers_of("sms"), vec![old(3)]);

    // The rest, with the same report.
    let out = run.tool("apply", &sim, &inp, &["--activate", "--resume"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(outcomes(&run, "report.csv"), vec!["updated"; 6]);
    for i in 1..=6 {
        assert_eq!(sim.user(&uid(i)).numbers_of("sms"), vec![new(i)]);
    }
}

#[test]
fn rows_and_only_users_pick_the_canary() {
    let sim = org(6);
    let run = Run::new();
    let inp = input(&run, 6);
    let out = run.tool_to("rows.csv", "plan", &sim, &inp, &["--rows", "3-4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        outcomes(&run, "rows.csv"),
        [
            "not_selected",
            "not_selected",
            "would_update",
            "would_update",
            "not_selected",
            "not_selected"
        ]
    );

    run.write(
        "canary.txt",
        &format!("# canary users\n{}\n\n{}\n", uid(2), uid(5).to_uppercase()),
    );
    let out = run.tool_to(
        "only.csv",
        "plan",
        &sim,
        &inp,
        &["--only-users", "canary.txt"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let o = outcomes(&run, "only.csv");
    assert_eq!(o[1], "would_update");
    assert_eq!(o[4], "would_update");
    assert_eq!(o.iter().filter(|x| *x == "not_selected").count(), 4);

    // A bad range is a usage error before any request.
    sim.clear_requests();
    let out = run.tool_to("bad.csv", "plan", &sim, &inp, &["--rows", "5-2"]);
    assert_eq!(code(&out), 2);
    assert!(sim.requests().is_empty());
}

fn refuse_enrolls_after_the_first_three(sim: &Sim) {
    // The org's enrollment policy stops allowing the new numbers after the
    // first three rows went through: every later enroll of a new number is
    // refused, the restores go through. (The first rows succeed so that
    // only --max-failures, not the stop on a refused first few changes,
    // is what ends the run.)
    for i in 4..=40 {
        sim.add_fault(
            Fault::new(FaultAction::Respond {
                status: 403,
                error_code: "E0000038".into(),
                error_summary: "This operation is not allowed in the user's current status.".into(),
                error_causes: vec![],
            })
            .op("enrollFactor")
            .phone(&new(i)),
        );
    }
}

#[test]
fn the_circuit_breaker_stops_after_n_failures_naming_the_common_error() {
    let sim = org(40);
    refuse_enrolls_after_the_first_three(&sim);
    let run = Run::new();
    let inp = input(&run, 40);
    let out = run.tool(
        "apply",
        &sim,
        &inp,
        &["--activate", "--max-failures", "5", "--concurrency", "1"],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--max-failures 5"), "{err}");
    assert!(err.contains("E0000038"), "{err}");
    let o = outcomes(&run, "report.csv");
    assert_eq!(o.len(), 40);
    assert_eq!(o.iter().filter(|x| *x == "updated").count(), 3, "{o:?}");
    assert_eq!(o.iter().filter(|x| *x == "failed_restored").count(), 5);
    assert_eq!(o.iter().filter(|x| *x == "not_attempted").count(), 32);
    // Nobody was left without a factor.
    for i in 1..=40 {
        assert_eq!(sim.user(&uid(i)).numbers_of("sms").len(), 1);
    }
}

#[test]
fn the_circuit_breaker_share_is_judged_after_20_rows() {
    let sim = org(40);
    refuse_enrolls_after_the_first_three(&sim);
    let run = Run::new();
    let inp = input(&run, 40);
    let out = run.tool(
        "apply",
        &sim,
        &inp,
        &["--activate", "--max-failures", "50%", "--concurrency", "1"],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let o = outcomes(&run, "report.csv");
    // 17 of the first 20 failed: over 50%, judged at the 20th row.
    assert_eq!(o.iter().filter(|x| *x == "updated").count(), 3, "{o:?}");
    assert_eq!(o.iter().filter(|x| *x == "failed_restored").count(), 17);
    assert_eq!(o.iter().filter(|x| *x == "not_attempted").count(), 20);
    assert!(stderr(&out).contains("17 of 20"), "{}", stderr(&out));
}

#[test]
fn update_profile_sets_mobile_phone_and_is_off_by_default() {
    let sim = org(2);
    let run = Run::new();
    run.write(
        "in.csv",
        &format!("user,new_phone\n{},{}\n", uid(1), new(1)),
    );
    let out = run.tool(
        "apply",
        &sim,
        &run.path("in.csv"),
        &["--activate", "--update-profile"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let u = sim.user(&uid(1));
    assert_eq!(u.profile["mobilePhone"], json!(new(1)));
    assert_eq!(
        u.profile["login"],
        json!("p1@example.com"),
        "partial update"
    );
    let posts: Vec<_> = sim
        .writes()
        .into_iter()
        .filter(|r| r.method == "POST" && !r.path.contains("/factors"))
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body,
        Some(json!({"profile": {"mobilePhone": new(1)}}))
    );
    assert!(run.report()[0]["detail"].contains("profile.mobilePhone"));

    run.write(
        "in2.csv",
        &format!("user,new_phone\n{},{}\n", uid(2), new(2)),
    );
    let out = run.tool_to(
        "second.csv",
        "apply",
        &sim,
        &run.path("in2.csv"),
        &["--activate"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        sim.user(&uid(2))
            .profile
            .get("mobilePhone")
            .is_none_or(Value::is_null)
    );
}

#[test]
fn without_a_terminal_json_logs_carry_progress_and_no_full_number() {
    let sim = org_with(
        12,
        SimConfig {
            latency: std::time::Duration::from_millis(120),
            ..SimConfig::default()
        },
    );
    let run = Run::new();
    let inp = input(&run, 12);
    let out = run.tool(
        "apply",
        &sim,
        &inp,
        &[
            "--activate",
            "--concurrency",
            "1",
            "--progress-interval",
            "1",
            "--log-format",
            "json",
            "--log-file",
            "run.log",
            "-v",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    // Not a terminal: no bars, no colours, no cursor movement.
    assert!(!err.contains('\u{1b}'), "{err:?}");
    let log = std::fs::read_to_string(run.path("run.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("progress:"))),
        "{log}"
    );
    assert!(lines.iter().all(|v| v.get("level").is_some()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run.path("run.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "log file is private");
    }
    // Full numbers only in the report.
    let report = std::fs::read_to_string(run.path("report.csv")).unwrap();
    for i in 1..=12 {
        let digits = &new(i)[1..];
        assert!(report.contains(digits));
        assert!(!log.contains(digits), "{log}");
        assert!(!err.contains(digits) && !stdout(&out).contains(digits));
        assert!(!log.contains(&old(i)[1..]) && !err.contains(&old(i)[1..]));
    }
    assert!(!log.contains(TOKEN) && !err.contains(TOKEN));
}

#[test]
fn failures_are_logged_masked_and_the_token_never_appears() {
    let sim = org(3);
    sim.add_fault(
        Fault::new(FaultAction::Respond {
            status: 400,
            error_code: "E0000001".into(),
            error_summary: "Api validation failed: factorEnrollRequest".into(),
            error_causes: vec![format!("Invalid phone {}", new(1))],
        })
        .op("enrollFactor")
        .phone(&new(1)),
    );
    let run = Run::new();
    let inp = input(&run, 3);
    let out = run.tool("apply", &sim, &inp, &["--activate", "-vv"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("failed_restored"), "{err}");
    for i in 1..=3 {
        assert!(!err.contains(&new(i)[1..]), "{err}");
        assert!(!err.contains(&old(i)[1..]), "{err}");
    }
    assert!(!err.contains(TOKEN) && !stdout(&out).contains(TOKEN));
    let report = std::fs::read_to_string(run.path("report.csv")).unwrap();
    assert!(!report.contains(TOKEN));
}

#[test]
fn plan_prints_a_table_with_counts_or_json_lines() {
    let sim = org(3);
    let run = Run::new();
    run.write(
        "in.csv",
        &format!(
            "user,new_phone\n{},{}\n{},{}\n{},not-a-number\n",
            uid(1),
            new(1),
            uid(2),
            old(2),
            uid(3)
        ),
    );
    let out = run.tool_to("t.csv", "plan", &sim, &run.path("in.csv"), &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().contains("outcome"), "{table}");
    assert!(table.contains("3 rows:"), "{table}");
    assert!(table.contains("would_update") && table.contains("unchanged"));
    assert!(!table.contains(&new(1)[1..]));

    let out = run.tool_to(
        "j.csv",
        "plan",
        &sim,
        &run.path("in.csv"),
        &["--format", "json"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let rows: Vec<&Value> = lines.iter().filter(|v| v["type"] == "row").collect();
    assert_eq!(rows.len(), 3);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["counts"]["would_update"], 1);
    assert_eq!(last["counts"]["unchanged"], 1);
    assert_eq!(last["counts"]["invalid"], 1);
    assert!(!stdout(&out).contains(&new(1)[1..]));
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_usage_error() {
    let sim = org(1);
    let run = Run::new();
    let inp = input(&run, 1);
    run.write("ca.pem", "not a certificate\n");
    let out = run.tool("plan", &sim, &inp, &["--ca-file", "ca.pem"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("ca.pem"), "{}", stderr(&out));
    let out = run.tool("plan", &sim, &inp, &["--ca-file", "missing.pem"]);
    assert_eq!(code(&out), 2);
    assert!(sim.requests().is_empty());
}

#[test]
fn validate_takes_the_region_from_the_config_file() {
    let run = Run::new();
    run.write(
        "in.csv",
        "user,new_phone\n00u1prd0000000000001,(213) 555-0101\n",
    );
    let mut c = run.cmd();
    c.args(["validate", "--input"]).arg(run.path("in.csv"));
    let out = c.output().unwrap();
    assert_eq!(code(&out), 1, "no region: the national number is invalid");
    run.write("tool.yaml", "defaultRegion: US\n");
    let mut c = run.cmd();
    c.args(["--config", "tool.yaml", "validate", "--input"])
        .arg(run.path("in.csv"));
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

/// The base64 body of the first PEM block of a fixture.
fn pem_der(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(p).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn ca_file_trusts_a_tls_inspecting_proxy() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let sim = org(2);
    // A TLS front on 127.0.0.1, signed by a test-only CA, that forwards to
    // the simulator: what a TLS-inspecting proxy looks like to the tool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cert = rustls::pki_types::CertificateDer::from(pem_der("test-server.pem"));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pem_der("test-server.key").into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = sim.url().trim_start_matches("http://").to_string();
    rt.spawn(async move {
        // Bounded: a plan of two rows needs a handful of connections.
        for _ in 0..200 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut front) = acceptor.accept(tcp).await
                    && let Ok(mut back) = tokio::net::TcpStream::connect(&upstream).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
                }
            });
        }
    });
    let run = Run::new();
    let inp = input(&run, 2);
    std::fs::copy(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-ca.pem"),
        run.path("ca.pem"),
    )
    .unwrap();
    let plan = |report: &str, extra: &[&str]| {
        let mut c = run.cmd();
        c.args(["plan", "--org-url", &format!("https://127.0.0.1:{port}")])
            .arg("--input")
            .arg(&inp)
            .arg("--report")
            .arg(run.path(report))
            .args(["--timeout", "5"])
            .args(extra);
        c.output().unwrap()
    };
    let out = plan("trusted.csv", &["--ca-file", "ca.pem"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        outcomes(&run, "trusted.csv"),
        ["would_update", "would_update"]
    );

    // Without it the proxy's certificate is refused (the system roots do
    // not know the test CA).
    let out = plan("untrusted.csv", &[]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    drop(rt);
}

#[test]
fn config_show_is_a_preflight_check() {
    let run = Run::new();
    // A token but no org: not a usable configuration.
    let out = run.cmd().args(["config", "show"]).output().unwrap();
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("org_url: NOT SET"),
        "{}",
        stdout(&out)
    );
    let out = run
        .cmd()
        .args(["config", "show", "--org-url", "https://acme.okta.com"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert!(!stdout(&out).contains(TOKEN));
    // An OAuth app without its key: not usable either, and it says why.
    let out = run
        .cmd()
        .env_remove("OKTA_CLIENT_TOKEN")
        .args(["config", "show", "--org-url", "https://acme.okta.com"])
        .args(["--client-id", "0oa1b2c3"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).contains("private key"), "{}", stdout(&out));
}
