//! End-to-end tests: a real simulator on 127.0.0.1 port 0, driven with
//! reqwest, checking the rules of docs/okta-behaviour.md as a client would see them.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::okta::wire::{ErrorBody, User, UserFactor};

const TOKEN: &str = "sim-test-token";
const ANA: &str = "00u1test000000000001";
const BEN: &str = "00u1test000000000002";
const CARA: &str = "00u1test000000000003";
const DAN: &str = "00u1test000000000004";
const EVE: &str = "00u1test000000000005";
const ANA_SMS: &str = "mbl1test000000000001";
const BEN_CALL: &str = "clf1test000000000002";

fn org() -> OrgData {
    serde_json::from_value(json!({"users": [
        {"id": ANA, "profile": {"login": "ana.lima@example.com", "email": "ana.lima@example.com",
            "firstName": "Ana", "lastName": "Lima"},
         "factors": [{"id": ANA_SMS, "factorType": "sms", "profile": {"phoneNumber": "+12135550101"}}]},
        {"id": BEN, "profile": {"login": "ben.okafor@example.com", "email": "ben.o@example.com"},
         "factors": [
            {"factorType": "sms", "profile": {"phoneNumber": "+1 213 555 0102"}},
            {"id": BEN_CALL, "factorType": "call",
             "profile": {"phoneNumber": "+12135550112", "phoneExtension": "12"}},
            {"factorType": "question", "profile": {"question": "disliked_food"}}]},
        {"id": CARA, "profile": {"login": "cara.silva@example.com"}},
        {"id": DAN, "status": "DEPROVISIONED", "profile": {"login": "dan.ito@example.com"},
         "factors": [{"factorType": "sms", "profile": {"phoneNumber": "+12135550104"}}]},
        {"id": EVE, "status": "STAGED", "profile": {"login": "eve.ng@example.com"},
         "factors": [], "storedPhones": [{"phoneNumber": "+13105550105"}]},
        {"id": "00u1test000000000006", "profile": {"login": "sam@example.com"}},
        {"id": "00u1test000000000007", "profile": {"login": "sam@example.org"}},
        {"id": "00u1test000000000008", "profile": {"login": "a/b@example.com"}},
    ]}))
    .expect("test org parses")
}

fn cfg() -> SimConfig {
    SimConfig {
        token: Some(TOKEN.to_string()),
        ..SimConfig::default()
    }
}

struct Harness {
    sim: Simulator,
    http: reqwest::Client,
}

impl Harness {
    async fn start(cfg: SimConfig) -> Harness {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sim = Simulator::start(addr, cfg, org()).await.unwrap();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Harness { sim, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .header("Accept", "application/json");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.call(Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> reqwest::Response {
        self.call(Method::DELETE, path, None).await
    }

    async fn enroll(&self, user: &str, query: &str, body: Value) -> reqwest::Response {
        let path = format!("/api/v1/users/{user}/factors{query}");
        self.call(Method::POST, &path, Some(body)).await
    }
}

fn sms(number: &str) -> Value {
    json!({"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": number}})
}

async fn error_of(r: reqwest::Response, status: StatusCode) -> ErrorBody {
    assert_eq!(r.status(), status);
    let e: ErrorBody = r.json().await.unwrap();
    assert_eq!(e.error_link.as_deref(), Some(e.error_code.as_str()));
    assert!(
        e.error_id
            .as_deref()
            .is_some_and(|id| id.starts_with("oae"))
    );
    e
}

fn causes(e: &ErrorBody) -> Vec<&str> {
    e.error_causes
        .iter()
        .map(|c| c.error_summary.as_str())
        .collect()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
}

fn date_secs(r: &reqwest::Response) -> u64 {
    let t = httpdate::parse_http_date(header(r, "date")).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn assert_common_headers(r: &reqwest::Response) {
    for h in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        "x-okta-request-id",
        "date",
    ] {
        let _ = header(r, h);
    }
}

#[tokio::test]
async fn f1_active_factor_blocks_any_enroll_of_its_type() {
    let h = Harness::start(cfg()).await;
    for (q, number) in [
        ("?updatePhone=true&activate=true", "+12135550199"),
        ("", "+12135550101"),
    ] {
        let e = error_of(h.enroll(ANA, q, sms(number)).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(e.error_code, "E0000001");
        assert_eq!(
            e.error_summary,
            "Api validation failed: factorEnrollRequest"
        );
        assert_eq!(causes(&e), ["A factor of this type is already set up."]);
    }
    assert_eq!(h.sim.user(ANA).unwrap().numbers_of("sms"), ["+12135550101"]);
}

#[tokio::test]
async fn f3_f4_new_number_after_delete_needs_update_phone() {
    let h = Harness::start(cfg()).await;
    let r = h
        .delete(&format!("/api/v1/users/{ANA}/factors/{ANA_SMS}"))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_common_headers(&r);

    let e = error_of(
        h.enroll(ANA, "?activate=true", sms("+12135550199")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e.error_code, "E0000001");
    assert_eq!(causes(&e), ["There is an existing verified phone number."]);

    let r = h
        .enroll(
            ANA,
            "?updatePhone=true&activate=true",
            sms("+1 213-555-0199"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: UserFactor = r.json().await.unwrap();
    assert_eq!(f.status, "ACTIVE");
    assert_eq!(f.factor_type, "sms");
    assert_eq!(f.provider, "OKTA");
    assert_eq!(f.phone_number(), Some("+12135550199"));
    assert!(f.id.starts_with("mbl") && f.id.len() == 20 && f.id != ANA_SMS);
    let links = f.links.unwrap();
    assert_eq!(links["self"]["hints"]["allow"], json!(["GET", "DELETE"]));
    assert!(
        links["verify"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/verify")
    );
    assert!(links.get("activate").is_none());

    let u = h.sim.user(ANA).unwrap();
    assert_eq!(u.numbers_of("sms"), ["+12135550199"]);
    assert_eq!(u.stored_phones.len(), 1, "the old number was replaced");
    assert!(u.stored_phones[0].verified && u.stored_phones[0].in_use);
    assert!(h.sim.sent_otps().is_empty(), "activate=true sends nothing");
}

#[tokio::test]
async fn f4_without_activate_is_pending_and_sends_an_otp() {
    let h = Harness::start(cfg()).await;
    h.delete(&format!("/api/v1/users/{ANA}/factors/{ANA_SMS}"))
        .await;
    let r = h
        .enroll(ANA, "?updatePhone=true", sms("+12135550198"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: UserFactor = r.json().await.unwrap();
    assert_eq!(f.status, "PENDING_ACTIVATION");
    let links = f.links.unwrap();
    assert_eq!(links["resend"][0]["name"], "sms");
    assert_eq!(links["self"]["hints"]["allow"], json!(["GET"]));
    let otps = h.sim.sent_otps();
    assert_eq!(otps.len(), 1);
    assert_eq!(otps[0].phone_number, "+12135550198");
    assert_eq!(otps[0].factor_id, f.id);

    // A wrong code is refused, the sent one activates the factor.
    let activate = format!("/api/v1/users/{ANA}/factors/{}/lifecycle/activate", f.id);
    let r = h
        .call(Method::POST, &activate, Some(json!({"passCode": "x"})))
        .await;
    assert_eq!(
        error_of(r, StatusCode::FORBIDDEN).await.error_code,
        "E0000068"
    );
    let r = h
        .call(
            Method::POST,
            &activate,
            Some(json!({"passCode": otps[0].code})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(h.sim.user(ANA).unwrap().stored_phones[0].verified);
}

#[tokio::test]
async fn f5_same_number_after_delete_is_active_without_otp() {
    let h = Harness::start(cfg()).await;
    h.delete(&format!("/api/v1/users/{ANA}/factors/{ANA_SMS}"))
        .await;
    let cat: Value = h
        .get(&format!("/api/v1/users/{ANA}/factors/catalog"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cat[0]["status"], "NOT_SETUP");
    assert_eq!(
        cat[0]["_embedded"]["phones"][0]["profile"]["phoneNumber"],
        "+12135550101"
    );

    let r = h.enroll(ANA, "", sms("+1 (213) 555-0101")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: UserFactor = r.json().await.unwrap();
    assert_eq!(f.status, "ACTIVE");
    assert!(h.sim.sent_otps().is_empty());

    // With no number at all, the stored one comes back too.
    h.delete(&format!("/api/v1/users/{ANA}/factors/{}", f.id))
        .await;
    let r = h
        .enroll(ANA, "", json!({"factorType": "sms", "provider": "OKTA"}))
        .await;
    let f: UserFactor = r.json().await.unwrap();
    assert_eq!(
        (f.status.as_str(), f.phone_number()),
        ("ACTIVE", Some("+12135550101"))
    );
}

#[tokio::test]
async fn f6_remove_recovery_enrollment_frees_the_user_for_any_number() {
    let h = Harness::start(cfg()).await;
    let r = h
        .delete(&format!(
            "/api/v1/users/{ANA}/factors/{ANA_SMS}?removeRecoveryEnrollment=true"
        ))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(h.sim.user(ANA).unwrap().stored_phones.is_empty());
    let r = h.enroll(ANA, "", sms("+13105550150")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let f: UserFactor = r.json().await.unwrap();
    assert_eq!(f.status, "PENDING_ACTIVATION");
    assert_eq!(h.sim.sent_otps().len(), 1);
}

#[tokio::test]
async fn f2_f12_pending_factor_and_the_30_second_otp_rule() {
    let h = Harness::start(cfg()).await;
    let first: UserFactor = h
        .enroll(CARA, "", sms("+12135550130"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first.status, "PENDING_ACTIVATION");

    let e = error_of(
        h.enroll(CARA, "", sms("+12135550130")).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(e.error_code, "E0000109");

    let e = error_of(
        h.enroll(CARA, "", sms("+12135550131")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(causes(&e), ["A factor of this type is already set up."]);

    let r = h
        .enroll(CARA, "?updatePhone=true", sms("+12135550131"))
        .await;
    let moved: UserFactor = r.json().await.unwrap();
    assert_eq!(moved.id, first.id, "the pending factor keeps its id");
    assert_eq!(moved.phone_number(), Some("+12135550131"));
    assert_eq!(h.sim.sent_otps().len(), 2);

    // Voice has its own code.
    let call = json!({"factorType": "call", "provider": "OKTA", "profile": {"phoneNumber": "+12135550132"}});
    assert_eq!(
        h.enroll(CARA, "", call.clone()).await.status(),
        StatusCode::OK
    );
    h.delete(&format!(
        "/api/v1/users/{CARA}/factors/{}",
        h.sim
            .user(CARA)
            .unwrap()
            .factors_of("call")
            .next()
            .unwrap()
            .id
    ))
    .await;
    let e = error_of(
        h.enroll(CARA, "", call).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(e.error_code, "E0000133");
}

#[tokio::test]
async fn staged_user_with_a_stored_phone_and_call_extension_rules() {
    let h = Harness::start(cfg()).await;
    let e = error_of(
        h.enroll(EVE, "", sms("+12135550140")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(causes(&e), ["There is an existing verified phone number."]);
    let r = h.enroll(EVE, "", sms("+13105550105")).await;
    assert_eq!(r.json::<UserFactor>().await.unwrap().status, "ACTIVE");

    let long = json!({"factorType": "call", "provider": "OKTA",
        "profile": {"phoneNumber": "+12135550141", "phoneExtension": "1234567890123456"}});
    assert_eq!(
        error_of(h.enroll(EVE, "", long).await, StatusCode::BAD_REQUEST)
            .await
            .error_code,
        "E0000121"
    );
    let ok = json!({"factorType": "call", "provider": "OKTA",
        "profile": {"phoneNumber": "+12135550141", "phoneExtension": "123456789012345"}});
    let f: UserFactor = h
        .enroll(EVE, "?activate=true", ok)
        .await
        .json()
        .await
        .unwrap();
    assert!(f.id.starts_with("clf"));
    assert_eq!(f.phone_extension(), Some("123456789012345"));
}

#[tokio::test]
async fn invalid_numbers_and_bodies() {
    let h = Harness::start(cfg()).await;
    for bad in [
        "+1 800 555 0100",
        "+1 213 555 010",
        "4.4770090012E+11",
        "",
        "+1 213 555 0100 x2",
    ] {
        let e = error_of(
            h.enroll(CARA, "?activate=true", sms(bad)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(e.error_code, "E0000098", "{bad:?}");
        assert_eq!(e.error_summary, "This phone number is invalid.");
        assert!(e.error_causes.is_empty());
    }
    let push = json!({"factorType": "push", "provider": "OKTA"});
    assert_eq!(
        error_of(h.enroll(CARA, "", push).await, StatusCode::BAD_REQUEST)
            .await
            .error_code,
        "E0000001"
    );
    let r = h
        .http
        .post(h.url(&format!("/api/v1/users/{CARA}/factors")))
        .header("Authorization", format!("SSWS {TOKEN}"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r, StatusCode::BAD_REQUEST).await.error_code,
        "E0000003"
    );
    assert!(h.sim.user(CARA).unwrap().factors.is_empty());
}

#[tokio::test]
async fn delete_get_404_and_405() {
    let h = Harness::start(cfg()).await;
    let path = format!("/api/v1/users/{BEN}/factors/{BEN_CALL}");
    let f: UserFactor = h.get(&path).await.json().await.unwrap();
    assert_eq!(f.phone_extension(), Some("12"));
    assert_eq!(h.delete(&path).await.status(), StatusCode::NO_CONTENT);
    for r in [h.delete(&path).await, h.get(&path).await] {
        assert_common_headers(&r);
        let e = error_of(r, StatusCode::NOT_FOUND).await;
        assert_eq!(e.error_code, "E0000007");
        assert_eq!(
            e.error_summary,
            format!("Not found: Resource not found: {BEN_CALL} (UserFactor)")
        );
    }
    let r = h.delete(&format!("/api/v1/users/{BEN}/factors/")).await;
    assert_eq!(header(&r, "allow"), "GET, POST");
    let e = error_of(r, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(e.error_code, "E0000022");
    // The sms and question factors are untouched.
    let list: Vec<UserFactor> = h
        .get(&format!("/api/v1/users/{BEN}/factors"))
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = list.iter().map(|f| f.factor_type.as_str()).collect();
    assert_eq!(types, ["sms", "question"]);
    assert_eq!(list[0].phone_number(), Some("+12135550102"));
}

#[tokio::test]
async fn user_lookups_ids_logins_short_names_and_status() {
    let h = Harness::start(cfg()).await;
    for key in [
        ANA,
        "ana.lima%40example.com",
        "ANA.LIMA@example.com",
        "ana.lima",
    ] {
        let r = h.get(&format!("/api/v1/users/{key}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{key}");
        let u: User = r.json().await.unwrap();
        assert_eq!(u.id, ANA);
    }
    for key in [
        "nobody@example.com",
        "sam",
        "a%2Fb%40example.com",
        "ana.lima%3Fx",
    ] {
        let r = h.get(&format!("/api/v1/users/{key}")).await;
        let e = error_of(r, StatusCode::NOT_FOUND).await;
        assert_eq!(e.error_code, "E0000007", "{key}");
    }
    let e = error_of(
        h.get("/api/v1/users/nobody@example.com").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        e.error_summary,
        "Not found: Resource not found: nobody@example.com (User)"
    );

    let u: User = h
        .get(&format!("/api/v1/users/{DAN}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(u.status, "DEPROVISIONED");
    let e = error_of(
        h.get(&format!("/api/v1/users/{DAN}/factors")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        e.error_summary,
        format!("Not found: Resource not found: {DAN} (User)")
    );
    let r = h.get("/api/v1/users/ana.lima%40example.com/factors").await;
    let e = error_of(r, StatusCode::NOT_FOUND).await;
    assert_eq!(
        e.error_summary,
        "Not found: Resource not found: ana.lima@example.com (User)"
    );
    let r = h.get(&format!("/api/v1/users/{CARA}/factors")).await;
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn search_filter_and_paging() {
    let h = Harness::start(cfg()).await;
    let list = |q: &str| {
        let url = h.url(&format!("/api/v1/users?{q}"));
        let http = h.http.clone();
        async move {
            http.get(url)
                .header("Authorization", format!("SSWS {TOKEN}"))
                .send()
                .await
                .unwrap()
        }
    };
    let ids = |v: Vec<User>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();

    let r = list("search=profile.login%20eq%20%22ANA.LIMA%40example.com%22").await;
    assert_eq!(ids(r.json().await.unwrap()), [ANA]);
    let r = list("filter=profile.login+eq+%22ANA.LIMA%40example.com%22").await;
    assert!(
        ids(r.json().await.unwrap()).is_empty(),
        "filter is case-sensitive"
    );
    let r = list("filter=profile.email%20eq%20%22ben.o%40example.com%22").await;
    assert_eq!(ids(r.json().await.unwrap()), [BEN]);
    let r = list("search=profile.login%20eq%20%22a%2Fb%40example.com%22").await;
    assert_eq!(ids(r.json().await.unwrap()), ["00u1test000000000008"]);
    let r = list("search=profile.login%20eq%20%22dan.ito%40example.com%22").await;
    assert_eq!(
        ids(r.json().await.unwrap()),
        [DAN],
        "search includes deactivated users"
    );
    let e = error_of(
        list("search=profile.login%20sw%20%22a%22").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(e.error_code, "E0000031");

    let r = list("").await;
    let all = ids(r.json().await.unwrap());
    assert!(!all.contains(&DAN.to_string()) && all.len() == 7);

    let mut seen = Vec::new();
    let mut next = Some(h.url("/api/v1/users?limit=3"));
    for _ in 0..5 {
        let Some(url) = next.take() else { break };
        let r = h
            .http
            .get(url)
            .header("Authorization", format!("SSWS {TOKEN}"))
            .send()
            .await
            .unwrap();
        let link = header(&r, "link").to_string();
        next = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .map(|l| {
                l.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            });
        seen.extend(ids(r.json().await.unwrap()));
    }
    assert_eq!(seen, all);
}

#[tokio::test]
async fn auth_errors_are_401_with_headers() {
    let h = Harness::start(cfg()).await;
    let url = h.url(&format!("/api/v1/users/{ANA}"));
    for auth in [
        None,
        Some("SSWS wrong"),
        Some("Bearer sim-test-token"),
        Some("SSWS"),
    ] {
        let mut rb = h.http.get(&url);
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_common_headers(&r);
        let e = error_of(r, StatusCode::UNAUTHORIZED).await;
        assert_eq!(
            (e.error_code.as_str(), e.error_summary.as_str()),
            ("E0000011", "Invalid token provided")
        );
    }

    let open = Harness::start(SimConfig::default()).await;
    let r = open
        .http
        .get(open.url(&format!("/api/v1/users/{ANA}")))
        .header("Authorization", "SSWS anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_buckets_last_slot_and_429() {
    let h = Harness::start(SimConfig {
        rate_limit: 3,
        window: Duration::from_millis(1500),
        ..cfg()
    })
    .await;
    let factors = format!("/api/v1/users/{ANA}/factors");
    let mut resets = Vec::new();
    for want in ["2", "1", "0"] {
        let r = h.get(&factors).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-rate-limit-limit"), "3");
        assert_eq!(header(&r, "x-rate-limit-remaining"), want);
        resets.push(header(&r, "x-rate-limit-reset").to_string());
    }
    assert!(resets.iter().all(|r| r == &resets[0]));

    // Enroll and list users share the factor calls' bucket.
    let r = h.enroll(CARA, "", sms("+12135550160")).await;
    assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert!(reset >= date_secs(&r) && reset <= date_secs(&r) + 3);
    let e = error_of(r, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(e.error_code, "E0000047");
    assert_eq!(
        e.error_summary,
        "API call exceeded rate limit due to too many requests."
    );
    assert_eq!(
        h.get("/api/v1/users").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // getUser and the profile update each have their own bucket.
    let r = h.get(&format!("/api/v1/users/{ANA}")).await;
    assert_eq!(
        (r.status(), header(&r, "x-rate-limit-remaining")),
        (StatusCode::OK, "2")
    );
    let r = h
        .call(
            Method::POST,
            &format!("/api/v1/users/{ANA}"),
            Some(json!({"profile": {}})),
        )
        .await;
    assert_eq!(
        (r.status(), header(&r, "x-rate-limit-remaining")),
        (StatusCode::OK, "2")
    );

    assert!(
        h.sim.user(CARA).unwrap().factors.is_empty(),
        "a 429 changes nothing"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = h.get(&factors).await;
    assert_eq!(
        (r.status(), header(&r, "x-rate-limit-remaining")),
        (StatusCode::OK, "2")
    );
}

#[tokio::test]
async fn concurrency_limit_gives_429_with_zero_limit() {
    let h = Harness::start(SimConfig {
        concurrency: 2,
        latency: Duration::from_millis(300),
        ..cfg()
    })
    .await;
    let path = format!("/api/v1/users/{ANA}/factors");
    let calls = (0..5).map(|_| h.get(&path));
    let responses = futures::future::join_all(calls).await;
    let mut ok = 0;
    let mut limited = 0;
    for r in responses {
        if r.status() == StatusCode::OK {
            ok += 1;
            continue;
        }
        assert_eq!(header(&r, "x-rate-limit-limit"), "0");
        assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
        let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
        assert!(reset >= date_secs(&r) + 30);
        assert_eq!(
            error_of(r, StatusCode::TOO_MANY_REQUESTS).await.error_code,
            "E0000047"
        );
        limited += 1;
    }
    assert_eq!((ok, limited), (2, 3));
    // Slots come back once answers are out.
    assert_eq!(h.get(&path).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn faults_respond_fail_after_effect_drop_and_scripted_429() {
    let h = Harness::start(cfg()).await;
    h.delete(&format!("/api/v1/users/{ANA}/factors/{ANA_SMS}"))
        .await;

    h.sim.add_fault(
        Fault::respond(504, "E0000067", "Factors Service Error.")
            .op("enrollFactor")
            .user(ANA)
            .times(1),
    );
    let q = "?updatePhone=true&activate=true";
    let e = error_of(
        h.enroll(ANA, q, sms("+12135550170")).await,
        StatusCode::GATEWAY_TIMEOUT,
    )
    .await;
    assert_eq!(e.error_code, "E0000067");
    assert!(
        h.sim.user(ANA).unwrap().factors.is_empty(),
        "respond does nothing"
    );

    h.sim.add_fault(
        Fault::new(FaultAction::PerformThenFail {
            status: 500,
            error_code: None,
            error_summary: None,
        })
        .phone("+1 213 555 0170")
        .times(1),
    );
    let e = error_of(
        h.enroll(ANA, q, sms("+12135550170")).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert_eq!(e.error_code, "E0000009");
    let enrolled = h.sim.user(ANA).unwrap().factors[0].clone();
    assert_eq!(
        enrolled.phone_number(),
        Some("+12135550170"),
        "the effect happened"
    );

    h.sim.add_fault(
        Fault::new(FaultAction::PerformThenDrop)
            .method("DELETE")
            .times(1),
    );
    let sent = h
        .http
        .delete(h.url(&format!("/api/v1/users/{ANA}/factors/{}", enrolled.id)))
        .header("Authorization", format!("SSWS {TOKEN}"))
        .send()
        .await;
    assert!(sent.is_err(), "the client hears nothing");
    assert!(
        h.sim.user(ANA).unwrap().factors.is_empty(),
        "but the delete happened"
    );

    // Over HTTP this time.
    let fault = json!({"match": {"op": "listFactors"},
        "action": {"rateLimited": {"limit": 600, "resetInSecs": 7}}, "times": 1});
    let r = h
        .http
        .post(h.url("/__sim/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = h.get(&format!("/api/v1/users/{ANA}/factors")).await;
    assert_eq!(header(&r, "x-rate-limit-limit"), "600");
    assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert_eq!(reset, date_secs(&r) + 7);
    assert_eq!(
        error_of(r, StatusCode::TOO_MANY_REQUESTS).await.error_code,
        "E0000047"
    );
    assert_eq!(
        h.get(&format!("/api/v1/users/{ANA}/factors"))
            .await
            .status(),
        StatusCode::OK
    );

    let bad = h
        .http
        .post(h.url("/__sim/faults"))
        .body(r#"{"action":"explode"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let listed: Value = h
        .http
        .get(h.url("/__sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert_eq!(listed[3]["hits"], 1);
    let r = h.http.delete(h.url("/__sim/faults")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let log = h.sim.requests();
    let dropped: Vec<_> = log.iter().filter(|r| r.dropped).collect();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].status, dropped[0].fault.as_deref()),
        (0, Some("#2 performThenDrop"))
    );
}

#[tokio::test]
async fn request_log_keeps_raw_paths_and_never_the_token() {
    let h = Harness::start(cfg()).await;
    h.get("/api/v1/users/ana.lima%40example.com").await;
    h.enroll(CARA, "?activate=true", sms("+12135550180")).await;
    h.http.get(h.url("/api/v1/users/x")).send().await.unwrap();
    h.http.get(h.url("/__sim/state")).send().await.unwrap();

    let log = h.sim.requests();
    assert_eq!(log.len(), 3, "admin calls are not logged");
    assert_eq!(log[0].path, "/api/v1/users/ana.lima%40example.com");
    assert_eq!(log[0].auth_scheme.as_deref(), Some("SSWS"));
    assert_eq!(log[0].status, 200);
    assert_eq!(log[1].query.as_deref(), Some("activate=true"));
    assert_eq!(
        log[1].body.as_ref().unwrap()["profile"]["phoneNumber"],
        "+12135550180"
    );
    assert_eq!((log[2].status, log[2].auth_scheme.as_deref()), (401, None));
    assert_eq!(log[2].error_code.as_deref(), Some("E0000011"));
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        log.iter()
            .all(|r| r.t_end_ms >= r.t_start_ms && r.request_id.len() == 27)
    );

    let over_http = h
        .http
        .get(h.url("/__sim/requests"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!over_http.contains(TOKEN));
    assert!(over_http.contains("\"requestId\""));
    let state: Value = h
        .http
        .get(h.url("/__sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["users"][2]["factors"][0]["profile"]["phoneNumber"],
        "+12135550180"
    );

    let r = h.http.post(h.url("/__sim/reset-log")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(h.sim.requests().is_empty());
}

#[tokio::test]
async fn oie_mode_allows_a_second_sms() {
    let h = Harness::start(SimConfig { oie: true, ..cfg() }).await;
    let r = h.enroll(ANA, "?activate=true", sms("+12135550190")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        h.sim.user(ANA).unwrap().numbers_of("sms"),
        ["+12135550101", "+12135550190"]
    );
    let e = error_of(
        h.enroll(ANA, "?activate=true", sms("+12135550190")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(causes(&e), ["A factor of this type is already set up."]);
}

#[tokio::test]
async fn profile_update_merges_and_concurrent_enrolls_serialise() {
    let h = Harness::start(cfg()).await;
    let r = h
        .call(
            Method::POST,
            "/api/v1/users/cara.silva%40example.com",
            Some(json!({"profile": {"mobilePhone": "+12135550185"}})),
        )
        .await;
    let u: User = r.json().await.unwrap();
    assert_eq!(u.profile.mobile_phone.as_deref(), Some("+12135550185"));
    assert_eq!(u.profile.login, "cara.silva@example.com");

    // Ten racing enrolls of different numbers: exactly one wins (F1).
    let calls = (0..10).map(|i| h.enroll(CARA, "?activate=true", sms(&format!("+1213555019{i}"))));
    let statuses: Vec<StatusCode> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(h.sim.user(CARA).unwrap().factors.len(), 1);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let h = Harness::start(cfg()).await;
    let url = h.url(&format!("/api/v1/users/{ANA}"));
    assert_eq!(
        h.get(&format!("/api/v1/users/{ANA}")).await.status(),
        StatusCode::OK
    );
    let Harness { sim, http } = h;
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown())
        .await
        .expect("shutdown is bounded");
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(fresh.get(&url).send().await.is_err());
    drop(http);
}

#[tokio::test]
async fn start_rejects_inconsistent_org_data() {
    let org: OrgData = serde_json::from_value(json!({"users": [{"id": ANA,
        "profile": {"login": "x@example.com"},
        "factors": [
            {"factorType": "sms", "profile": {"phoneNumber": "+12135550101"}},
            {"factorType": "sms", "profile": {"phoneNumber": "+12135550102"}}]}]}))
    .unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let err = Simulator::start(addr, cfg(), org.clone())
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let oie = Simulator::start(addr, SimConfig { oie: true, ..cfg() }, org)
        .await
        .unwrap();
    oie.shutdown().await;
}

#[tokio::test]
async fn bundled_samples_load_as_their_readme_describes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let org = OrgData::load(&dir.join("org.json")).unwrap();
    assert_eq!(org.users.len(), 40);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Simulator::start(addr, cfg(), org).await.unwrap();
    let users = sim.users();
    let status = |n: usize| users[n - 1].status.as_str();
    assert_eq!(
        (status(5), status(19), status(21), status(24)),
        ("DEPROVISIONED", "SUSPENDED", "STAGED", "LOCKED_OUT")
    );
    assert!(users[3].factors.is_empty() && users[3].stored_phones[0].verified);
    assert_eq!(users[12].numbers_of("call"), users[12].numbers_of("sms"));
    assert_eq!(users[22].factors[0].status, "PENDING_ACTIVATION");
    assert!(
        users
            .iter()
            .all(|u| u.id.len() == 20 && u.login().ends_with("@example.com"))
    );
    sim.shutdown().await;

    let csv = std::fs::read(dir.join("users.csv")).unwrap();
    assert!(csv.starts_with(b"\xEF\xBB\xBFuser,display_name,new_phone\r\n"));
}

#[tokio::test]
async fn capture_records_bodies_and_skew_moves_date_and_reset() {
    let h = Harness::start(cfg()).await;
    // Off by default: no exchange in the log.
    let _ = h.get("/api/v1/users/00u1test000000000001/factors").await;
    assert!(h.sim.requests()[0].exchange.is_none());

    h.sim.set_settings(super::SimSettings {
        capture: true,
        clock_skew_secs: -600,
    });
    let machine = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = h.get("/api/v1/users/00u1test000000000001/factors").await;
    let date = date_secs(&r);
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert!(
        date + 590 <= machine && date + 610 >= machine,
        "{date} vs {machine}"
    );
    assert!(
        reset > date && reset <= date + 61,
        "reset {reset}, date {date}"
    );
    let body: Value = r.json().await.unwrap();

    let log = h.sim.requests();
    let rec = log.last().unwrap();
    let ex = rec.exchange.as_ref().expect("captured");
    assert_eq!(ex.response_body.as_ref(), Some(&body));
    assert_eq!(ex.request_headers["authorization"], "SSWS [redacted]");
    assert!(!serde_json::to_string(&log).unwrap().contains(TOKEN));
    assert_eq!(ex.response_headers["x-rate-limit-reset"], reset.to_string());
    assert!(rec.server_time_ms / 1000 >= date && rec.server_time_ms / 1000 <= date + 1);

    // A scripted 429 resets relative to the skewed Date too.
    h.sim.add_fault(
        Fault::new(FaultAction::RateLimited {
            limit: 100,
            reset_in_secs: 7,
        })
        .times(1),
    );
    let r = h.get("/api/v1/users/00u1test000000000001/factors").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert_eq!(reset, date_secs(&r) + 7);
    h.sim.shutdown().await;
}
