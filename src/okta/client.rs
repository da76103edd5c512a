//! The only code that speaks HTTP to Okta.
//!
//! It builds paths from percent-encoded segments (a login is never pasted
//! into a URL as is), parses Okta's error bodies into [`OktaError`], and owns
//! the retries of a single request: 429s through the pacer, 5xx and timeouts
//! with backoff for requests that are safe to repeat. An enroll whose outcome
//! is unknown is never repeated here; the job lists the factors again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::FactorType;
use super::auth::{Auth, Credentials};
use super::wire::{EnrollRequest, ErrorBody, FactorProfile, User, UserFactor, X_OKTA_REQUEST_ID};
use crate::outcome::OktaErrorInfo;
use crate::pacer::{Bucket, Pacer, RateHeaders};

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub org_url: Url,
    pub credentials: Credentials,
    pub timeout: Duration,
    /// Extra trusted roots (`--ca-file`), e.g. a TLS-inspecting proxy's.
    pub extra_roots: Vec<reqwest::Certificate>,
    /// Attempts for a request that fails with 5xx, a timeout or a broken
    /// connection (when it is safe to repeat).
    pub max_attempts: u32,
    /// Attempts for a request answered 429 (rate or concurrency limit).
    pub max_throttled: u32,
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Okta answered with an error status.
    Status,
    /// No answer in time: the request may or may not have been applied.
    Timeout,
    /// The connection could not be made: the request was not sent.
    Connect,
    /// The connection broke: the request may or may not have been applied.
    Transport,
    /// A success status with a body the tool could not read.
    Decode,
    /// Stopped on this side before sending (journal, read-only mode).
    Local,
    /// No access token: the token endpoint refused or was unreachable.
    Auth,
}

/// A failed request, with everything Okta Support needs.
#[derive(Debug, Clone)]
pub struct OktaError {
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub body: Option<ErrorBody>,
    pub request_id: String,
    pub message: String,
    /// Attempts made, including the last.
    pub attempts: u32,
}

impl OktaError {
    pub fn code(&self) -> &str {
        self.body.as_ref().map_or("", |b| b.error_code.as_str())
    }

    pub fn summary(&self) -> &str {
        self.body.as_ref().map_or("", |b| b.error_summary.as_str())
    }

    pub fn causes(&self) -> Vec<String> {
        self.body.as_ref().map_or_else(Vec::new, |b| {
            b.error_causes
                .iter()
                .map(|c| c.error_summary.clone())
                .collect()
        })
    }

    /// Whether the request may have been applied even though no success
    /// came back (a timeout, a broken connection, a 5xx).
    pub fn outcome_unknown(&self) -> bool {
        match self.kind {
            FailureKind::Timeout | FailureKind::Transport => true,
            FailureKind::Status => self.status.is_some_and(|s| s >= 500),
            FailureKind::Connect | FailureKind::Decode | FailureKind::Local | FailureKind::Auth => {
                false
            }
        }
    }

    /// A failure on this side: nothing was sent.
    pub fn local(message: impl Into<String>) -> OktaError {
        OktaError {
            kind: FailureKind::Local,
            status: None,
            body: None,
            request_id: String::new(),
            message: message.into(),
            attempts: 0,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The failure means the run cannot go on at all: a bad token, or an
    /// org-wide daily SMS/voice quota used up.
    pub fn is_fatal(&self) -> bool {
        // An org that cannot be reached at all (after the retries) is not
        // one row's problem: every row would fail the same way.
        self.kind == FailureKind::Auth
            || self.kind == FailureKind::Connect
            || self.status == Some(401)
            || matches!(self.code(), "E0000146" | "E0000147" | "E0000186")
    }

    /// A hint computed from the error, printed under it.
    pub fn hint(&self) -> Option<&'static str> {
        if self.kind == FailureKind::Auth {
            return Some(match self.code() {
                "invalid_client" => {
                    "check the client id, the private key (its public half must be registered on the app, with the same kid) and this machine's clock"
                }
                "invalid_scope" => {
                    "grant the scopes on the app's Okta API Scopes tab (okta.users.manage for apply, okta.users.read for plan), or set them with --scopes"
                }
                "unauthorized_client" => {
                    "the app must be an API Services app that allows the client credentials grant"
                }
                "invalid_dpop_proof" | "use_dpop_nonce" => {
                    "the DPoP handshake failed; check this machine's clock, or turn off 'Require DPoP' on the app"
                }
                _ => {
                    "check --org-url, the network path to the org (--ca-file for a TLS-inspecting proxy) and the app's settings"
                }
            });
        }
        match (self.status, self.code()) {
            (Some(401), _) => Some(
                "check the credentials (the API token, or the OAuth app and its key): they may be wrong, expired or revoked; `okta-phone-migrate config show` tells which are used",
            ),
            (Some(403), "E0000006") => Some(
                "the token's admin (or the OAuth app) lacks a role or scope covering these users; an API token acts with the rights of the admin who created it, an OAuth app with the admin role assigned to it and its granted scopes",
            ),
            (_, "E0000146" | "E0000147" | "E0000186") => {
                Some("the org's SMS/voice quota is used up; retrying today is futile")
            }
            (Some(429), _) => {
                Some("lower --rate-share or --rate to leave more of the limit to other clients")
            }
            (None, _) if self.kind == FailureKind::Connect => Some(
                "the org could not be reached: check --org-url, DNS, the proxy (HTTPS_PROXY) and, behind a TLS-inspecting proxy, --ca-file",
            ),
            _ => None,
        }
    }

    pub fn info(&self) -> OktaErrorInfo {
        OktaErrorInfo {
            http_status: self.status,
            error_code: self.code().to_string(),
            error_summary: if self.summary().is_empty() {
                self.message.clone()
            } else {
                self.summary().to_string()
            },
            error_causes: self.causes(),
            request_id: self.request_id.clone(),
        }
    }
}

impl fmt::Display for OktaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.status, &self.body) {
            (Some(status), Some(body)) => {
                write!(
                    f,
                    "HTTP {status} {}: {}",
                    body.error_code, body.error_summary
                )?;
                for cause in &body.error_causes {
                    write!(f, " ({})", cause.error_summary)?;
                }
            }
            (Some(status), None) => write!(f, "HTTP {status}: {}", self.message)?,
            (None, _) => f.write_str(&self.message)?,
        }
        if !self.request_id.is_empty() {
            write!(f, " [request id {}]", self.request_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for OktaError {}

/// A successful answer and how many attempts it took.
#[derive(Debug, Clone)]
pub struct Reply<T> {
    pub value: T,
    pub request_id: String,
    pub attempts: u32,
}

/// The Okta client: one per run, shared by every worker.
pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    auth: Auth,
    pacer: Arc<Pacer>,
    /// When set, only GET may leave (the `plan` guarantee).
    read_only: bool,
}

/// Whether a request can be repeated after an unknown outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    Never,
}

impl Client {
    pub fn new(cfg: ClientConfig, pacer: Arc<Pacer>, read_only: bool) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90));
        for cert in &cfg.extra_roots {
            builder = builder.add_root_certificate(cert.clone());
        }
        let http = builder.build()?;
        // The token requests go through the same client (same roots, same
        // timeouts); they never pass the read-only guard below, which is
        // for the API.
        let auth = Auth::new(cfg.credentials.clone(), &cfg.org_url, http.clone());
        Ok(Client {
            http,
            cfg,
            auth,
            pacer,
            read_only,
        })
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Requests sent to the OAuth token endpoint (0 with an SSWS token).
    pub fn token_requests(&self) -> u64 {
        self.auth.token_requests()
    }

    /// `{org}/api/v1/users/{segments...}`, each segment percent-encoded so
    /// that `+`, `#`, `?`, `/` and `%` in a login stay part of it.
    fn users_url(&self, segments: &[&str]) -> Url {
        let mut url = self.cfg.org_url.clone();
        {
            let base = url.path().trim_end_matches('/').to_string();
            let mut path = base;
            path.push_str("/api/v1/users");
            for s in segments {
                path.push('/');
                path.extend(percent_encoding::utf8_percent_encode(s, SEGMENT));
            }
            url.set_path(&path);
        }
        url
    }

    /// `GET /api/v1/users/{idOrLogin}`; `None` on 404.
    pub async fn get_user(&self, id_or_login: &str) -> Result<Reply<Option<User>>, OktaError> {
        let url = self.users_url(&[id_or_login]);
        match self
            .send::<User>(Method::GET, url, Bucket::UserGet, None, Repeat::Safe)
            .await
        {
            Ok(r) => Ok(Reply {
                value: Some(r.value),
                request_id: r.request_id,
                attempts: r.attempts,
            }),
            Err(e) if e.is_not_found() => Ok(Reply {
                value: None,
                request_id: e.request_id,
                attempts: e.attempts,
            }),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/users?search=profile.{attr} eq "value"`: exact matches.
    pub async fn search_users(
        &self,
        attr: &str,
        value: &str,
    ) -> Result<Reply<Vec<User>>, OktaError> {
        let mut url = self.users_url(&[]);
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        url.query_pairs_mut()
            .append_pair("search", &format!("profile.{attr} eq \"{escaped}\""))
            .append_pair("limit", "20");
        self.send(Method::GET, url, Bucket::Users, None, Repeat::Safe)
            .await
    }

    /// `GET /api/v1/users/{userId}/factors`.
    pub async fn list_factors(&self, user_id: &str) -> Result<Reply<Vec<UserFactor>>, OktaError> {
        let url = self.users_url(&[user_id, "factors"]);
        self.send(Method::GET, url, Bucket::Users, None, Repeat::Safe)
            .await
    }

    /// `DELETE /api/v1/users/{userId}/factors/{factorId}`.
    pub async fn delete_factor(
        &self,
        user_id: &str,
        factor_id: &str,
        remove_recovery: bool,
    ) -> Result<Reply<()>, OktaError> {
        if factor_id.is_empty() {
            // `DELETE .../factors/` is a different endpoint; never send it.
            return Err(OktaError::local(
                "refusing to delete a factor with an empty id",
            ));
        }
        let mut url = self.users_url(&[user_id, "factors", factor_id]);
        if remove_recovery {
            url.query_pairs_mut()
                .append_pair("removeRecoveryEnrollment", "true");
        }
        // A repeated DELETE after an unknown outcome answers 404, which the
        // job reads as "already gone": safe to repeat.
        self.send_empty(Method::DELETE, url, Bucket::Users).await
    }

    /// `POST /api/v1/users/{userId}` with only `profile.mobilePhone`: a
    /// partial update, so the rest of the profile is left as it is.
    pub async fn set_mobile_phone(
        &self,
        user_id: &str,
        phone_e164: &str,
    ) -> Result<Reply<User>, OktaError> {
        let url = self.users_url(&[user_id]);
        let body = serde_json::to_vec(&serde_json::json!({
            "profile": {"mobilePhone": phone_e164}
        }))
        .map_err(|e| OktaError::local(format!("cannot encode the profile update: {e}")))?;
        // Setting the same value twice is harmless: safe to repeat.
        self.send(
            Method::POST,
            url,
            Bucket::UserWrite,
            Some(body),
            Repeat::Safe,
        )
        .await
    }

    /// `POST /api/v1/users/{userId}/factors?updatePhone=true&activate=...`.
    pub async fn enroll_factor(
        &self,
        user_id: &str,
        factor_type: FactorType,
        phone_e164: &str,
        extension: Option<&str>,
        activate: bool,
    ) -> Result<Reply<UserFactor>, OktaError> {
        let mut url = self.users_url(&[user_id, "factors"]);
        url.query_pairs_mut()
            .append_pair("updatePhone", "true")
            .append_pair("activate", if activate { "true" } else { "false" });
        let body = EnrollRequest {
            factor_type: factor_type.as_str().to_string(),
            provider: "OKTA".to_string(),
            profile: Some(FactorProfile {
                phone_number: Some(phone_e164.to_string()),
                phone_extension: extension
                    .filter(|_| factor_type == FactorType::Call)
                    .map(str::to_string),
            }),
        };
        let body = serde_json::to_vec(&body).map_err(|e| OktaError {
            kind: FailureKind::Decode,
            status: None,
            body: None,
            request_id: String::new(),
            message: format!("cannot encode the enroll request: {e}"),
            attempts: 0,
        })?;
        self.send(Method::POST, url, Bucket::Users, Some(body), Repeat::Never)
            .await
    }

    async fn send_empty(
        &self,
        method: Method,
        url: Url,
        bucket: Bucket,
    ) -> Result<Reply<()>, OktaError> {
        let raw = self
            .send_raw(method, url, bucket, None, Repeat::Safe)
            .await?;
        Ok(Reply {
            value: (),
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        bucket: Bucket,
        body: Option<Vec<u8>>,
        repeat: Repeat,
    ) -> Result<Reply<T>, OktaError> {
        let raw = self.send_raw(method, url, bucket, body, repeat).await?;
        match serde_json::from_slice::<T>(&raw.value) {
            Ok(value) => Ok(Reply {
                value,
                request_id: raw.request_id,
                attempts: raw.attempts,
            }),
            Err(e) => Err(OktaError {
                kind: FailureKind::Decode,
                status: Some(raw.status),
                body: None,
                request_id: raw.request_id,
                message: format!("unexpected response body: {e}"),
                attempts: raw.attempts,
            }),
        }
    }

    /// One logical request, with its retries.
    async fn send_raw(
        &self,
        method: Method,
        url: Url,
        bucket: Bucket,
        body: Option<Vec<u8>>,
        repeat: Repeat,
    ) -> Result<RawReply, OktaError> {
        if self.read_only && method != Method::GET {
            // The dry-run guarantee lives here, below every caller.
            return Err(OktaError::local(format!(
                "{method} refused: this run is read-only"
            )));
        }
        let mut attempts = 0u32;
        let mut throttled = 0u32;
        let mut failures = 0u32;
        let mut auth_retries = 0u32;
        let mut retry_for = String::new();
        loop {
            attempts += 1;
            let ticket = self.pacer.acquire(bucket).await;
            // Signed after the pacer's wait, so a proof is fresh and a token
            // that ran out while waiting is renewed first.
            let applied = match self.auth.apply(&method, &url).await {
                Ok(a) => a,
                Err(mut e) => {
                    e.attempts += attempts - 1;
                    return Err(e);
                }
            };
            let result = {
                let mut req = self
                    .http
                    .request(method.clone(), url.clone())
                    .header(reqwest::header::ACCEPT, "application/json")
                    .header(
                        reqwest::header::AUTHORIZATION,
                        applied.authorization.clone(),
                    );
                if let Some(proof) = &applied.dpop {
                    req = req.header("DPoP", proof.clone());
                }
                if attempts > 1 {
                    req = req.header("X-Okta-Retry-Count", (attempts - 1).to_string());
                    if !retry_for.is_empty() {
                        req = req.header("X-Okta-Retry-For", retry_for.as_str());
                    }
                }
                if let Some(b) = &body {
                    req = req
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(b.clone());
                }
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let headers = resp.headers().clone();
                        let rate = RateHeaders::parse(&headers);
                        if let Some(h) = rate {
                            self.pacer.observe(bucket, h, status.is_success());
                        }
                        self.auth.observe(&headers);
                        let request_id = headers
                            .get(X_OKTA_REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        match resp.bytes().await {
                            Ok(bytes) => Ok((status, rate, request_id, bytes.to_vec(), headers)),
                            Err(e) => Err(transport_error(&e, request_id, attempts)),
                        }
                    }
                    Err(e) => Err(transport_error(&e, String::new(), attempts)),
                }
            };
            drop(ticket);

            let err = match result {
                Ok((status, _, request_id, bytes, _)) if status.is_success() => {
                    self.pacer.succeeded();
                    return Ok(RawReply {
                        status: status.as_u16(),
                        request_id,
                        value: bytes,
                        attempts,
                    });
                }
                // A refused OAuth token (expired, revoked) or a DPoP nonce
                // request: nothing was applied, so sending it again with a
                // new token or nonce is safe, a couple of times at most.
                Ok((status, _, _, _, headers))
                    if status == StatusCode::UNAUTHORIZED
                        && auth_retries < 2
                        && self.auth.rejected(&applied, &headers) =>
                {
                    auth_retries += 1;
                    continue;
                }
                Ok((status, rate, request_id, bytes, _)) => {
                    let body = serde_json::from_slice::<ErrorBody>(&bytes).ok();
                    let err = OktaError {
                        kind: FailureKind::Status,
                        status: Some(status.as_u16()),
                        message: body
                            .as_ref()
                            .map(|b| b.error_summary.clone())
                            .unwrap_or_else(|| {
                                status.canonical_reason().unwrap_or("error").to_string()
                            }),
                        body,
                        request_id,
                        attempts,
                    };
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        match err.code() {
                            // A code was just sent to this phone: this row
                            // waits, the others go on.
                            "E0000109" | "E0000133" if throttled < self.cfg.max_throttled => {
                                throttled += 1;
                                tracing::info!(
                                    code = err.code(),
                                    "a code was just sent to this phone; waiting 30s"
                                );
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                retry_for.clone_from(&err.request_id);
                                continue;
                            }
                            "E0000047" | "" if throttled < self.cfg.max_throttled => {
                                throttled += 1;
                                retry_for.clone_from(&err.request_id);
                                let wait = match rate {
                                    Some(h) if h.is_concurrency_limit() => {
                                        let w = self.pacer.too_many_in_flight();
                                        tracing::info!(
                                            concurrency = self.pacer.status().concurrency,
                                            "Okta's concurrency limit was hit; fewer requests in flight"
                                        );
                                        w
                                    }
                                    _ => {
                                        let w = self.pacer.pause_until_reset(bucket, rate);
                                        tracing::info!(
                                            bucket = bucket.name(),
                                            wait_ms = w.as_millis() as u64,
                                            "rate limit reached; pausing until the reset"
                                        );
                                        w
                                    }
                                };
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                            _ => return Err(err),
                        }
                    }
                    err
                }
                Err(e) => e,
            };

            // 5xx, timeouts and broken connections: back off and repeat,
            // unless repeating could apply a write twice.
            let retryable = match err.kind {
                FailureKind::Connect => true,
                FailureKind::Status => err.status.is_some_and(|s| s >= 500),
                FailureKind::Timeout | FailureKind::Transport => true,
                FailureKind::Decode | FailureKind::Local | FailureKind::Auth => false,
            };
            let may_repeat = repeat == Repeat::Safe || !err.outcome_unknown();
            failures += 1;
            if !retryable || !may_repeat || failures >= self.cfg.max_attempts {
                return Err(err);
            }
            let backoff = backoff(failures);
            tracing::debug!(error = %err, backoff_ms = backoff.as_millis() as u64, "retrying");
            tokio::time::sleep(backoff).await;
        }
    }
}

struct RawReply {
    status: u16,
    request_id: String,
    value: Vec<u8>,
    attempts: u32,
}

/// Exponential backoff with full jitter: 0.5 s, 1 s, 2 s, ... capped at 30 s.
fn backoff(failures: u32) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(30));
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(ms / 2 + rand::random_range(0..=ms / 2))
}

fn transport_error(e: &reqwest::Error, request_id: String, attempts: u32) -> OktaError {
    let kind = if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Transport
    };
    // Display the error chain without the URL: it may hold a login.
    let mut message = String::from(match kind {
        FailureKind::Timeout => "request timed out",
        FailureKind::Connect => "could not connect",
        _ => "connection failed",
    });
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    OktaError {
        kind,
        status: None,
        body: None,
        request_id,
        message,
        attempts,
    }
}

/// Everything but RFC 3986 unreserved characters is encoded in a path
/// segment, which covers `+` (`%2B`), `#`, `?`, `/`, `%` and `@`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(
            ClientConfig {
                org_url: Url::parse("https://org.example.com").unwrap(),
                credentials: Credentials::Ssws(crate::config::Secret::new("t".into())),
                timeout: Duration::from_secs(1),
                extra_roots: Vec::new(),
                max_attempts: 3,
                max_throttled: 3,
            },
            Arc::new(Pacer::new(1.0, None, 1)),
            false,
        )
        .unwrap()
    }

    #[test]
    fn logins_are_percent_encoded_as_one_segment() {
        let c = client();
        assert_eq!(
            c.users_url(&["pat+mfa@example.com"]).as_str(),
            "https://org.example.com/api/v1/users/pat%2Bmfa%40example.com"
        );
        assert_eq!(
            c.users_url(&["lee#ops@example.com", "factors"]).as_str(),
            "https://org.example.com/api/v1/users/lee%23ops%40example.com/factors"
        );
        assert_eq!(
            c.users_url(&["dept/kim?x%y"]).as_str(),
            "https://org.example.com/api/v1/users/dept%2Fkim%3Fx%25y"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for f in 1..20 {
            let b = backoff(f);
            assert!(b <= Duration::from_secs(30));
        }
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(4) >= Duration::from_secs(2));
    }
}
