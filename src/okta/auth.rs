//! How each request proves who sends it: an SSWS API token, or OAuth 2.0
//! for an Okta API service app.
//!
//! OAuth here is the client-credentials grant with a `private_key_jwt`
//! client assertion (RS256) at the org authorization server
//! (`/oauth2/v1/token`). The access token is cached and renewed before it
//! runs out, and again when an API call answers 401. DPoP is switched on
//! the way Okta's own SDKs do it: the first token request goes without a
//! proof; if Okta answers `invalid_dpop_proof`, a fresh P-256 key is made
//! for this run only (kept in memory, separate from the client key) and
//! every later token request and API call carries a proof signed with it;
//! `use_dpop_nonce` answers and `DPoP-Nonce` headers supply the nonce.
//!
//! Nothing here logs or formats a token, an assertion or a key.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{FailureKind, OktaError};
use super::wire::{ErrorBody, X_OKTA_REQUEST_ID};
use crate::config::Secret;

/// The org authorization server's token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";
/// The scope `plan` asks for by default.
pub const SCOPE_READ: &str = "okta.users.read";
/// The scope `apply` and `rollback` ask for by default.
pub const SCOPE_MANAGE: &str = "okta.users.manage";

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Token requests per fetch: DPoP discovery, a nonce or two, and a few
/// retries after 429/5xx or a broken connection.
const MAX_TOKEN_ATTEMPTS: u32 = 8;
const MAX_TOKEN_FAILURES: u32 = 3;

/// How the run signs in, as configured.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `Authorization: SSWS <token>`.
    Ssws(Secret),
    /// OAuth 2.0 client credentials with a private key JWT.
    PrivateKey(OAuthSettings),
}

impl Credentials {
    /// One line for logs and `config show`; never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Ssws(_) => "SSWS API token".into(),
            Credentials::PrivateKey(o) => format!(
                "OAuth service app {} (private_key_jwt, key {}; scopes {})",
                o.client_id,
                o.key.kid().unwrap_or("without kid"),
                o.scopes.join(" ")
            ),
        }
    }
}

/// The OAuth service app.
#[derive(Clone, Debug)]
pub struct OAuthSettings {
    pub client_id: String,
    pub key: ClientKey,
    pub scopes: Vec<String>,
}

/// The app's RSA private key, which signs the client assertion (RS256).
#[derive(Clone)]
pub struct ClientKey {
    pair: Arc<signature::RsaKeyPair>,
    kid: Option<String>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey(kid={:?}, ***)", self.kid)
    }
}

impl ClientKey {
    /// Reads a PEM private key (PKCS#8 or PKCS#1) or an RSA JWK (a lone
    /// key or a JWKS holding one key). Errors never quote the key.
    pub fn parse(text: &str) -> Result<ClientKey, String> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') {
            return ClientKey::from_jwk(trimmed);
        }
        if trimmed.contains("-----BEGIN ") {
            return ClientKey::from_pem(trimmed);
        }
        Err(
            "it is neither a PEM private key (-----BEGIN PRIVATE KEY-----) nor a JSON Web Key"
                .into(),
        )
    }

    /// The key id for the assertion header; `--key-id` wins over the JWK's.
    pub fn with_kid(mut self, kid: Option<String>) -> ClientKey {
        if let Some(k) = kid.filter(|k| !k.trim().is_empty()) {
            self.kid = Some(k.trim().to_string());
        }
        self
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    fn from_pem(text: &str) -> Result<ClientKey, String> {
        let (label, der) = pem_block(text)?;
        let pair = match label.as_str() {
            "PRIVATE KEY" => signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                format!("the PKCS#8 key is not a usable RSA key ({e}); Okta's RS256 needs RSA, 2048 bits or more")
            })?,
            "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(&der)
                .map_err(|e| format!("the PKCS#1 RSA key is not usable ({e})"))?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err("the key is encrypted with a passphrase; store it decrypted in a file only you can read (openssl pkcs8 -in KEY -out PLAIN.pem)".into());
            }
            "EC PRIVATE KEY" => {
                return Err("it is an EC key; this tool signs the client assertion with RS256, which needs an RSA key".into());
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => {
                return Err(format!(
                    "it holds a {}, not the private key",
                    label.to_lowercase()
                ));
            }
            other => return Err(format!("unexpected PEM block {other:?}")),
        };
        Ok(ClientKey {
            pair: Arc::new(pair),
            kid: None,
        })
    }

    fn from_jwk(text: &str) -> Result<ClientKey, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
        let key = match v.get("keys").and_then(Value::as_array) {
            Some(keys) if keys.len() == 1 => &keys[0],
            Some(keys) => {
                return Err(format!(
                    "the JWKS holds {} keys; give a file with the one to use",
                    keys.len()
                ));
            }
            None => &v,
        };
        if key.get("kty").and_then(Value::as_str) != Some("RSA") {
            return Err("the JWK is not an RSA key (kty must be RSA)".into());
        }
        let part = |name: &str| -> Result<Vec<u8>, String> {
            let s = key
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("the JWK lacks {name:?}; a private JWK is needed"))?;
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| format!("the JWK's {name:?} is not base64url"))
        };
        let components = ring::rsa::KeyPairComponents {
            public_key: signature::RsaPublicKeyComponents {
                n: part("n")?,
                e: part("e")?,
            },
            d: part("d")?,
            p: part("p")?,
            q: part("q")?,
            dP: part("dp")?,
            dQ: part("dq")?,
            qInv: part("qi")?,
        };
        let pair = signature::RsaKeyPair::from_components(&components)
            .map_err(|e| format!("the JWK is not a usable RSA key ({e})"))?;
        Ok(ClientKey {
            pair: Arc::new(pair),
            kid: key.get("kid").and_then(Value::as_str).map(str::to_string),
        })
    }

    fn sign_jwt(&self, header: &Value, claims: &Value, rng: &SystemRandom) -> Option<String> {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                rng,
                input.as_bytes(),
                &mut sig,
            )
            .ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// The first PEM block: its label and its decoded body.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), String> {
    let begin = text.find("-----BEGIN ").ok_or("no -----BEGIN line")?;
    let rest = &text[begin + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or("a broken -----BEGIN line")?;
    let label = rest[..label_end].to_string();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_end
        .find(&end_marker)
        .ok_or_else(|| format!("no {end_marker} line"))?;
    let body = &body_and_end[..body_end];
    if body.contains(':') {
        // `Proc-Type: 4,ENCRYPTED` and friends.
        return Err("the key is encrypted with a passphrase; store it decrypted in a file only you can read".into());
    }
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| "the PEM body is not valid base64".to_string())?;
    Ok((label, der))
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64_json(header), b64_json(claims))
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A random UUID (version 4) for `jti`.
fn new_jti() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `htu`: the URL without query and fragment (RFC 9449 §4.2).
pub fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `ath`: base64url(SHA-256(access token)).
fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// This run's DPoP key: P-256, made in memory when Okta asks for DPoP.
struct DpopKey {
    pair: signature::EcdsaKeyPair,
    jwk: Value,
}

impl DpopKey {
    fn generate(rng: &SystemRandom) -> Option<DpopKey> {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, rng).ok()?;
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).ok()?;
        let point = pair.public_key().as_ref();
        // Uncompressed point: 0x04, x (32 bytes), y (32 bytes).
        if point.len() != 65 {
            return None;
        }
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Some(DpopKey { pair, jwk })
    }

    fn proof(
        &self,
        method: &Method,
        url: &Url,
        nonce: Option<&str>,
        token: Option<&str>,
        rng: &SystemRandom,
    ) -> Option<String> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({
            "htm": method.as_str(),
            "htu": htu(url),
            "iat": epoch_now(),
            "jti": new_jti(),
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        if let Some(t) = token {
            claims["ath"] = json!(ath(t));
        }
        let input = signing_input(&header, &claims);
        let sig = self.pair.sign(rng, input.as_bytes()).ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TokenKind {
    Bearer,
    Dpop,
}

#[derive(Clone)]
struct Token {
    value: Secret,
    kind: TokenKind,
    renew_at: Instant,
    generation: u64,
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    dpop: Option<Arc<DpopKey>>,
    /// The token endpoint's last nonce.
    token_nonce: Option<String>,
    /// The API's last nonce (`DPoP-Nonce` on an API answer).
    api_nonce: Option<String>,
    generation: u64,
    /// A fetch that failed for good: later requests get the same answer
    /// instead of asking the token endpoint again (the run stops anyway).
    failed: Option<OktaError>,
}

/// OAuth at run time: the settings, the cached token and the DPoP state.
pub struct OAuth {
    settings: OAuthSettings,
    token_url: Url,
    http: reqwest::Client,
    rng: SystemRandom,
    /// Held while a token is fetched, so that many workers wait for one
    /// fetch instead of each making their own.
    fetching: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    token_requests: AtomicU64,
}

/// What `Auth` put on one request, to judge a 401 that comes back.
pub struct Applied {
    pub authorization: HeaderValue,
    pub dpop: Option<HeaderValue>,
    generation: u64,
}

/// The run's way of signing in, shared by every request.
pub enum Auth {
    Ssws(Secret),
    OAuth(Box<OAuth>),
}

impl Auth {
    pub fn new(credentials: Credentials, org_url: &Url, http: reqwest::Client) -> Auth {
        match credentials {
            Credentials::Ssws(s) => Auth::Ssws(s),
            Credentials::PrivateKey(settings) => {
                let mut token_url = org_url.clone();
                token_url.set_path(TOKEN_PATH);
                Auth::OAuth(Box::new(OAuth {
                    settings,
                    token_url,
                    http,
                    rng: SystemRandom::new(),
                    fetching: tokio::sync::Mutex::new(()),
                    state: Mutex::new(State::default()),
                    token_requests: AtomicU64::new(0),
                }))
            }
        }
    }

    /// The headers for one API request.
    pub async fn apply(&self, method: &Method, url: &Url) -> Result<Applied, OktaError> {
        match self {
            Auth::Ssws(s) => Ok(Applied {
                authorization: s.authorization(),
                dpop: None,
                generation: 0,
            }),
            Auth::OAuth(o) => o.apply(method, url).await,
        }
    }

    /// Notes what an API answer says about DPoP (a new nonce).
    pub fn observe(&self, headers: &HeaderMap) {
        if let Auth::OAuth(o) = self
            && let Some(n) = dpop_nonce(headers)
        {
            o.lock().api_nonce = Some(n);
        }
    }

    /// After a 401 on an API call: whether sending it again can help (a
    /// renewed token, or the nonce the API asked for).
    pub fn rejected(&self, applied: &Applied, headers: &HeaderMap) -> bool {
        match self {
            Auth::Ssws(_) => false,
            Auth::OAuth(o) => o.rejected(applied, headers),
        }
    }

    /// Requests sent to the token endpoint so far.
    pub fn token_requests(&self) -> u64 {
        match self {
            Auth::Ssws(_) => 0,
            Auth::OAuth(o) => o.token_requests.load(Ordering::Relaxed),
        }
    }
}

fn dpop_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|n| !n.is_empty())
}

fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn bad_header() -> OktaError {
    OktaError::local("the access token or proof is not a valid header value")
}

/// The token endpoint's JSON answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The token endpoint's error answer (RFC 6749 §5.2).
#[derive(Deserialize, Default)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl OAuth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn valid_token(&self) -> Option<(Token, Option<Arc<DpopKey>>, Option<String>)> {
        let st = self.lock();
        let t = st.token.as_ref().filter(|t| Instant::now() < t.renew_at)?;
        Some((t.clone(), st.dpop.clone(), st.api_nonce.clone()))
    }

    async fn apply(&self, method: &Method, url: &Url) -> Result<Applied, OktaError> {
        let (token, dpop, nonce) = match self.valid_token() {
            Some(x) => x,
            None => {
                let _one = self.fetching.lock().await;
                if let Some(e) = self.lock().failed.clone() {
                    return Err(e);
                }
                match self.valid_token() {
                    Some(x) => x,
                    None => {
                        let t = match self.fetch().await {
                            Ok(t) => t,
                            Err(e) => {
                                self.lock().failed = Some(e.clone());
                                return Err(e);
                            }
                        };
                        let mut st = self.lock();
                        st.generation += 1;
                        let t = Token {
                            generation: st.generation,
                            ..t
                        };
                        st.token = Some(t.clone());
                        (t, st.dpop.clone(), st.api_nonce.clone())
                    }
                }
            }
        };
        let secret = token.value.expose();
        match (token.kind, dpop) {
            (TokenKind::Dpop, Some(key)) => {
                let proof = key
                    .proof(method, url, nonce.as_deref(), Some(secret), &self.rng)
                    .ok_or_else(|| OktaError::local("cannot sign the DPoP proof"))?;
                Ok(Applied {
                    authorization: sensitive(&format!("DPoP {secret}")).ok_or_else(bad_header)?,
                    dpop: Some(sensitive(&proof).ok_or_else(bad_header)?),
                    generation: token.generation,
                })
            }
            (TokenKind::Dpop, None) => Err(OktaError::local(
                "Okta issued a DPoP-bound token without a DPoP handshake",
            )),
            (TokenKind::Bearer, _) => Ok(Applied {
                authorization: sensitive(&format!("Bearer {secret}")).ok_or_else(bad_header)?,
                dpop: None,
                generation: token.generation,
            }),
        }
    }

    fn rejected(&self, applied: &Applied, headers: &HeaderMap) -> bool {
        let challenge = headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mut st = self.lock();
        if challenge.contains("use_dpop_nonce")
            && let Some(n) = dpop_nonce(headers)
        {
            st.api_nonce = Some(n);
            return true;
        }
        // Drop the token that was refused, unless another request has
        // already replaced it.
        if st.token.as_ref().map(|t| t.generation) == Some(applied.generation) {
            st.token = None;
            tracing::info!("Okta refused the access token (401); getting a new one");
        }
        true
    }

    /// A signed client assertion: iss = sub = client id, aud = the token
    /// URL, five minutes of validity, a fresh jti.
    fn assertion(&self) -> Option<String> {
        let now = epoch_now();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = self.settings.key.kid() {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.token_url.as_str(),
            "iat": now,
            "exp": now + 300,
            "jti": new_jti(),
        });
        self.settings.key.sign_jwt(&header, &claims, &self.rng)
    }

    async fn fetch(&self) -> Result<Token, OktaError> {
        let scope = self.settings.scopes.join(" ");
        let mut failures = 0u32;
        let mut nonce_answers = 0u32;
        for attempt in 1..=MAX_TOKEN_ATTEMPTS {
            let assertion = self
                .assertion()
                .ok_or_else(|| OktaError::local("cannot sign the client assertion with the key"))?;
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ];
            let (dpop, nonce) = {
                let st = self.lock();
                (st.dpop.clone(), st.token_nonce.clone())
            };
            let mut req = self
                .http
                .post(self.token_url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .form(&form);
            if let Some(key) = &dpop {
                let proof = key
                    .proof(
                        &Method::POST,
                        &self.token_url,
                        nonce.as_deref(),
                        None,
                        &self.rng,
                    )
                    .ok_or_else(|| OktaError::local("cannot sign the DPoP proof"))?;
                req = req.header("DPoP", proof);
            }
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    failures += 1;
                    let err = auth_error(
                        None,
                        "",
                        &format!("the token endpoint could not be reached: {}", chain(&e)),
                        String::new(),
                        attempt,
                    );
                    if failures >= MAX_TOKEN_FAILURES {
                        return Err(err);
                    }
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                    continue;
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let request_id = headers
                .get(X_OKTA_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let t: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
                    auth_error(
                        Some(status.as_u16()),
                        "",
                        "the token endpoint's answer is not a token response",
                        request_id.clone(),
                        attempt,
                    )
                })?;
                let kind = if t.token_type.eq_ignore_ascii_case("DPoP") {
                    TokenKind::Dpop
                } else {
                    TokenKind::Bearer
                };
                let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600).max(1));
                // Renew ahead of expiry: a fifth of the lifetime, at most a
                // minute, so a request never leaves with a dying token.
                let margin = (lifetime / 5).min(Duration::from_secs(60));
                tracing::info!(
                    token_type = ?kind,
                    expires_in_s = lifetime.as_secs(),
                    "access token obtained from {}",
                    TOKEN_PATH
                );
                return Ok(Token {
                    value: Secret::new(t.access_token),
                    kind,
                    renew_at: Instant::now() + lifetime - margin,
                    generation: 0,
                });
            }
            let err: OAuthErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            match (status.as_u16(), err.error.as_str()) {
                (400 | 401, "invalid_dpop_proof") if dpop.is_none() => {
                    let key = DpopKey::generate(&self.rng)
                        .ok_or_else(|| OktaError::local("cannot make a DPoP key"))?;
                    tracing::info!(
                        "the app requires DPoP; proofs are signed with a key made for this run"
                    );
                    self.lock().dpop = Some(Arc::new(key));
                    continue;
                }
                (400 | 401, "use_dpop_nonce") if dpop.is_some() && nonce_answers < 2 => {
                    nonce_answers += 1;
                    match dpop_nonce(&headers) {
                        Some(n) => {
                            self.lock().token_nonce = Some(n);
                            continue;
                        }
                        None => {
                            return Err(auth_error(
                                Some(status.as_u16()),
                                &err.error,
                                "Okta asked for a DPoP nonce but sent none",
                                request_id,
                                attempt,
                            ));
                        }
                    }
                }
                (429 | 500..=599, _) if failures + 1 < MAX_TOKEN_FAILURES => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                    continue;
                }
                _ => {
                    let description = if err.error_description.is_empty() {
                        status.canonical_reason().unwrap_or("error").to_string()
                    } else {
                        err.error_description
                    };
                    return Err(auth_error(
                        Some(status.as_u16()),
                        &err.error,
                        &description,
                        request_id,
                        attempt,
                    ));
                }
            }
        }
        Err(auth_error(
            None,
            "",
            "no access token after several token requests",
            String::new(),
            MAX_TOKEN_ATTEMPTS,
        ))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut source = e.source();
    while let Some(x) = source {
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&x.to_string());
        source = x.source();
    }
    if s.is_empty() {
        "connection failed".into()
    } else {
        s
    }
}

/// A token request that failed: it stops the run (see `OktaError::is_fatal`).
fn auth_error(
    status: Option<u16>,
    code: &str,
    description: &str,
    request_id: String,
    attempts: u32,
) -> OktaError {
    OktaError {
        kind: FailureKind::Auth,
        status,
        body: Some(ErrorBody {
            error_code: code.to_string(),
            error_summary: format!("token request refused: {description}"),
            ..Default::default()
        }),
        request_id,
        message: format!("token request failed: {description}"),
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_is_a_uuid_v4() {
        let j = new_jti();
        assert_eq!(j.len(), 36);
        assert_eq!(&j[14..15], "4");
        assert_ne!(new_jti(), j);
    }

    #[test]
    fn htu_drops_query_and_fragment() {
        let u =
            Url::parse("https://acme.okta.com/api/v1/users/a%2Bb/factors?activate=true#x").unwrap();
        assert_eq!(htu(&u), "https://acme.okta.com/api/v1/users/a%2Bb/factors");
    }

    #[test]
    fn keys_that_are_not_private_rsa_keys_are_refused_without_quoting_them() {
        let e = ClientKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            .unwrap_err();
        assert!(e.contains("public key"), "{e}");
        let e = ClientKey::parse(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("RSA"), "{e}");
        let e = ClientKey::parse(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
        let e = ClientKey::parse(r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#).unwrap_err();
        assert!(e.contains("\"d\""), "{e}");
        assert!(ClientKey::parse("just some text").is_err());
    }

    #[test]
    fn the_dpop_key_is_a_p256_jwk() {
        let rng = SystemRandom::new();
        let k = DpopKey::generate(&rng).unwrap();
        assert_eq!(k.jwk["crv"], "P-256");
        let url = Url::parse("https://acme.okta.com/oauth2/v1/token").unwrap();
        let proof = k
            .proof(&Method::POST, &url, Some("n1"), Some("tok"), &rng)
            .unwrap();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(proof.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["ath"], ath("tok"));
    }
}
