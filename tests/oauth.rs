//! OAuth 2.0 for an Okta API service app, end to end: the real binary
//! against the simulator's token endpoint, with the test-only keys in
//! tests/fixtures (see its README).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use common::*;
use okta_phone_migrate::simulator::{
    Fault, FaultAction, LoggedRequest, OrgData, SimConfig, SimOAuth, Simulator, TokenRequest,
    UserSnapshot,
};
use serde_json::{Value, json};

const CLIENT_ID: &str = "0oa1testapp000000001";

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn public_jwk() -> Value {
    serde_json::from_str(&fixture("client-key.pub.jwk.json")).unwrap()
}

/// A simulator with an OAuth app registered, on its own runtime.
struct OSim {
    rt: tokio::runtime::Runtime,
    sim: Option<Simulator>,
}

impl OSim {
    fn start(oauth: SimOAuth, cfg: SimConfig, users: Vec<Value>) -> OSim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let org: OrgData = serde_json::from_value(json!({ "users": users })).unwrap();
        let cfg = SimConfig {
            token: Some(TOKEN.to_string()),
            oauth: Some(oauth),
            ..cfg
        };
        let sim = rt
            .block_on(Simulator::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                cfg,
                org,
            ))
            .unwrap();
        OSim { rt, sim: Some(sim) }
    }

    fn with_app(oauth: SimOAuth) -> OSim {
        OSim::start(oauth, SimConfig::default(), users(3))
    }

    fn s(&self) -> &Simulator {
        self.sim.as_ref().unwrap()
    }

    fn url(&self) -> String {
        self.s().base_url().to_string()
    }

    fn tokens(&self) -> Vec<TokenRequest> {
        self.s().token_requests()
    }

    fn requests(&self) -> Vec<LoggedRequest> {
        self.s().requests()
    }

    fn user(&self, id: &str) -> UserSnapshot {
        self.s().user(id).unwrap()
    }
}

impl Drop for OSim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

fn app() -> SimOAuth {
    SimOAuth {
        client_id: CLIENT_ID.into(),
        keys: vec![public_jwk()],
        ..SimOAuth::default()
    }
}

fn uid(i: usize) -> String {
    format!("00u1oau{i:013}")
}

fn users(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| {
            user(
                &uid(i),
                &format!("u{i}@example.com"),
                &[("sms", &format!("+1213555{:04}", 1000 + i), "ACTIVE")],
            )
        })
        .collect()
}

fn csv(n: usize) -> String {
    let mut s = String::from("user,new_phone\n");
    for i in 1..=n {
        s.push_str(&format!("{},+1213555{:04}\n", uid(i), 2000 + i));
    }
    s
}

/// Copies a fixture key into the run's folder, private to its owner.
fn key_file(run: &Run, fixture_name: &str) -> PathBuf {
    let p = run.write(fixture_name, &fixture(fixture_name));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// `apply`/`plan` signed in as the app: no SSWS token in the environment.
fn oauth_run(run: &Run, sim: &OSim, command: &str, key: &str, extra: &[&str]) -> Output {
    let input = run.path("in.csv");
    let mut c = run.cmd();
    c.env_remove("OKTA_CLIENT_TOKEN")
        .arg(command)
        .args(["--org-url", &sim.url(), "--client-id", CLIENT_ID])
        .arg("--private-key")
        .arg(key_file(run, key))
        .arg("--input")
        .arg(&input)
        .arg("--report")
        .arg(run.path("report.csv"))
        .args(extra);
    c.output().unwrap()
}

fn everything(run: &Run, out: &Output) -> String {
    let mut all = stdout(out) + &stderr(out);
    for f in ["report.csv", "log.txt"] {
        all.push_str(&std::fs::read_to_string(run.path(f)).unwrap_or_default());
    }
    all
}

/// No assertion, proof, access token or key material left the process
/// other than in requests: JWTs start `eyJ`; the key's base64 lines are
/// long runs that appear in no log.
fn assert_no_secrets(run: &Run, out: &Output) {
    let all = everything(run, out);
    assert!(!all.contains("eyJ"), "a JWT leaked: {all}");
    assert!(!all.contains("access_token"), "{all}");
    for line in fixture("client-key.pem").lines().skip(2).take(3) {
        assert!(!all.contains(line), "key material leaked");
    }
    let jwk = public_jwk();
    assert!(!all.contains(&jwk["n"].as_str().unwrap()[..40]));
}

/// Not one of the access tokens the simulator issued is in any output.
fn assert_no_tokens(sim: &OSim, run: &Run, out: &Output) {
    let all = everything(run, out);
    let tokens = sim.s().issued_tokens();
    assert!(!tokens.is_empty());
    for t in tokens {
        assert!(!all.contains(&t), "an access token leaked");
    }
}

#[test]
fn dpop_handshake_then_every_call_carries_a_proof() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(3));
    let out = oauth_run(
        &run,
        &sim,
        "apply",
        "client-key.pem",
        &[
            "--activate",
            "--key-id",
            "test-kid-1",
            "-vv",
            "--log-file",
            "log.txt",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for r in run.report() {
        assert_eq!(r["outcome"], "updated", "{r:?}");
    }
    // The handshake Okta's SDKs do: no proof → invalid_dpop_proof; a
    // proof without nonce → use_dpop_nonce; a proof with it → DPoP token.
    let t = sim.tokens();
    let shape: Vec<(u16, Option<&str>, bool, bool)> = t
        .iter()
        .map(|r| (r.status, r.error.as_deref(), r.had_dpop, r.had_nonce))
        .collect();
    assert_eq!(
        shape,
        [
            (400, Some("invalid_dpop_proof"), false, false),
            (400, Some("use_dpop_nonce"), true, false),
            (200, None, true, true),
        ],
        "{t:?}"
    );
    assert_eq!(t[2].token_type.as_deref(), Some("DPoP"));
    assert_eq!(t[2].scope, "okta.users.manage");
    let reqs = sim.requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter()
            .all(|r| r.auth_scheme.as_deref() == Some("DPoP") && r.status < 400),
        "{reqs:?}"
    );
    assert_eq!(
        sim.user(&uid(1)).numbers_of("sms"),
        vec!["+12135552001".to_string()]
    );
    assert_no_secrets(&run, &out);
    assert_no_tokens(&sim, &run, &out);
}

#[test]
fn a_jwk_key_with_its_kid_gets_a_bearer_token_when_dpop_is_off() {
    let sim = OSim::with_app(SimOAuth {
        require_dpop: false,
        ..app()
    });
    let run = Run::new();
    run.write("in.csv", &csv(2));
    let out = oauth_run(&run, &sim, "apply", "client-key.jwk.json", &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = sim.tokens();
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(t[0].token_type.as_deref(), Some("Bearer"));
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.auth_scheme.as_deref() == Some("Bearer"))
    );
    assert_no_secrets(&run, &out);
    assert_no_tokens(&sim, &run, &out);
}

#[test]
fn a_pkcs1_pem_works_too() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(1));
    let out = oauth_run(&run, &sim, "apply", "client-key.pkcs1.pem", &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn the_wrong_key_stops_the_run_before_any_row_with_a_hint() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(3));
    let out = oauth_run(&run, &sim, "apply", "other-key.pem", &["--activate"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("invalid_client"), "{err}");
    assert!(err.contains("hint:") && err.contains("kid"), "{err}");
    assert!(sim.requests().is_empty(), "no API call without a token");
    let rep = run.report();
    assert_eq!(rep.len(), 3);
    assert!(
        rep.iter().all(|r| r["outcome"] == "not_attempted"),
        "{rep:?}"
    );
    assert_no_secrets(&run, &out);
}

#[test]
fn an_expiring_token_is_renewed_mid_run() {
    // Tokens live 2 s; the run takes longer, so it must renew, and no
    // request may go out with a dead token.
    let sim = OSim::start(
        SimOAuth {
            token_lifetime: Duration::from_secs(2),
            ..app()
        },
        SimConfig {
            latency: Duration::from_millis(60),
            ..SimConfig::default()
        },
        users(24),
    );
    let run = Run::new();
    run.write("in.csv", &csv(24));
    let out = oauth_run(
        &run,
        &sim,
        "apply",
        "client-key.pem",
        &["--activate", "--concurrency", "2"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(run.report().iter().all(|r| r["outcome"] == "updated"));
    let issued = sim.tokens().iter().filter(|t| t.status == 200).count();
    assert!(issued >= 2, "never renewed: {:?}", sim.tokens());
    let refused: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn a_revoked_token_is_replaced_and_the_request_sent_again() {
    let sim = OSim::with_app(app());
    // The enroll of the first row is answered 401 once, as for a token
    // revoked mid-run: nothing was applied, so it is sent again.
    sim.s().add_fault(
        Fault::new(FaultAction::Respond {
            status: 401,
            error_code: "E0000011".into(),
            error_summary: "Invalid token provided".into(),
            error_causes: vec![],
        })
        .op("enrollFactor")
        .times(1),
    );
    let run = Run::new();
    run.write("in.csv", &csv(1));
    let out = oauth_run(&run, &sim, "apply", "client-key.pem", &["--activate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(run.report()[0]["outcome"], "updated");
    let issued = sim.tokens().iter().filter(|t| t.status == 200).count();
    assert_eq!(issued, 2, "{:?}", sim.tokens());
    let posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [401, 200]);
}

#[test]
fn an_api_nonce_is_picked_up_from_the_challenge() {
    let sim = OSim::with_app(SimOAuth {
        api_nonce: true,
        ..app()
    });
    let run = Run::new();
    run.write("in.csv", &csv(2));
    let out = oauth_run(
        &run,
        &sim,
        "apply",
        "client-key.pem",
        &["--activate", "--concurrency", "1"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        1,
        "one challenge, then the nonce is kept: {statuses:?}"
    );
    assert!(run.report().iter().all(|r| r["outcome"] == "updated"));
}

#[test]
fn plan_asks_for_the_read_scope_and_posts_only_to_the_token_endpoint() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(3));
    let out = oauth_run(&run, &sim, "plan", "client-key.pem", &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(sim.requests().iter().all(|r| r.method == "GET"));
    let t = sim.tokens();
    assert!(t.iter().all(|t| t.scope == "okta.users.read"), "{t:?}");
    assert!(run.report().iter().all(|r| r["outcome"] == "would_update"));
}

#[test]
fn a_scope_the_app_lacks_is_named() {
    let sim = OSim::with_app(SimOAuth {
        scopes: vec!["okta.users.read".into()],
        ..app()
    });
    let run = Run::new();
    run.write("in.csv", &csv(1));
    let out = oauth_run(&run, &sim, "apply", "client-key.pem", &["--activate"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("invalid_scope") && err.contains("okta.users.manage"),
        "{err}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn a_key_file_readable_by_others_is_refused_with_the_chmod() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(1));
    let key = key_file(&run, "client-key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut c = run.cmd();
    c.env_remove("OKTA_CLIENT_TOKEN")
        .args(["apply", "--activate", "--org-url", &sim.url()])
        .args(["--client-id", CLIENT_ID, "--private-key"])
        .arg(&key)
        .arg("--input")
        .arg(run.path("in.csv"))
        .arg("--report")
        .arg(run.path("report.csv"));
    let out = c.output().unwrap();
    if cfg!(unix) {
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("chmod 600 {}", key.display())),
            "{}",
            stderr(&out)
        );
        assert!(sim.tokens().is_empty());
    }
}

#[test]
fn okta_yaml_in_home_configures_the_app_like_the_sdks() {
    let sim = OSim::with_app(app());
    let run = Run::new();
    run.write("in.csv", &csv(2));
    let key = key_file(&run, "client-key.pem");
    std::fs::create_dir_all(run.path(".okta")).unwrap();
    let yaml = format!(
        "okta:\n  client:\n    orgUrl: {}\n    authorizationMode: PrivateKey\n    clientId: {CLIENT_ID}\n    scopes:\n      - okta.users.read\n      - okta.users.manage\n    privateKey: {}\n    privateKeyId: test-kid-1\n    connectionTimeout: 30\n",
        sim.url(),
        key.display()
    );
    std::fs::write(run.path(".okta/okta.yaml"), yaml).unwrap();
    let mut c = run.cmd();
    c.env_remove("OKTA_CLIENT_TOKEN")
        .args(["apply", "--activate", "--input"])
        .arg(run.path("in.csv"))
        .arg("--report")
        .arg(run.path("report.csv"));
    let out = c.output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = sim.tokens();
    assert_eq!(t.last().unwrap().scope, "okta.users.read okta.users.manage");
    assert!(run.report().iter().all(|r| r["outcome"] == "updated"));
}

/// Signs a client assertion with the fixture key, by hand, to show what
/// the simulator's token endpoint refuses.
fn hand_assertion(claims: Value) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let pem = fixture("client-key.pem");
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!(
        "{}.{}",
        enc(&json!({"alg": "RS256", "kid": "test-kid-1"})),
        enc(&claims)
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn the_token_endpoint_checks_audience_expiry_and_replay() {
    let sim = OSim::with_app(SimOAuth {
        require_dpop: false,
        ..app()
    });
    let token_url = format!("{}/oauth2/v1/token", sim.url());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |assertion: &str| -> (u16, Value) {
        sim.rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&token_url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("scope", "okta.users.read"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        })
    };
    let claims = |aud: &str, exp: u64, jti: &str| json!({"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": aud, "iat": now, "exp": exp, "jti": jti});
    let (status, body) = post(&hand_assertion(claims(&token_url, now + 300, "a")));
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&hand_assertion(claims(&token_url, now + 300, "a")));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(body["error_description"].as_str().unwrap().contains("jti"));
    let (status, body) = post(&hand_assertion(claims(
        "https://other.okta.com/oauth2/v1/token",
        now + 300,
        "b",
    )));
    assert_eq!(status, 401);
    assert!(body["error_description"].as_str().unwrap().contains("aud"));
    let (status, body) = post(&hand_assertion(claims(&token_url, now - 5, "c")));
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let mut tampered = hand_assertion(claims(&token_url, now + 300, "d"));
    // One character of the signature changed.
    let i = tampered.len() - 10;
    let c = if &tampered[i..=i] == "A" { "B" } else { "A" };
    tampered.replace_range(i..=i, c);
    let (status, _) = post(&tampered);
    assert_eq!(status, 401);
}
