//! OAuth 2.0 as the simulator models Okta's org authorization server: the
//! token endpoint for API service apps (client credentials with a
//! `private_key_jwt` assertion, DPoP with a server nonce), and the check of
//! `Bearer` / `DPoP` access tokens on `/api/v1` calls.
//!
//! Written apart from the client's signing code (`okta::auth`): it parses
//! and verifies JWTs itself, so a mistake in one is not mirrored in the
//! other. What it checks:
//!
//! - the assertion: `alg` RS256, signature by a registered public key (by
//!   `kid` when given), `iss` = `sub` = the client id, `aud` = this token
//!   URL, `exp` in the future and at most an hour after `iat`, `jti` never
//!   seen before;
//! - the requested scopes are granted;
//! - with `require_dpop`: a `DPoP` header on the token request, else 400
//!   `invalid_dpop_proof`; the proof's `typ` `dpop+jwt`, `alg` ES256 or
//!   RS256 with the public `jwk` in its header, signature, `htm`, `htu`,
//!   `iat` within five minutes, a fresh `jti`, and the current nonce (else
//!   400 `use_dpop_nonce` with a `DPoP-Nonce` header). The token is then
//!   bound to the proof key's thumbprint (RFC 7638) and typed `DPoP`;
//! - on API calls: the token is known and unexpired, its scheme matches
//!   its type, a DPoP token comes with a proof by the bound key carrying
//!   `ath`, the method and the URL, and (with `api_nonce`) the API's nonce;
//!   GET needs `okta.users.read` or `okta.users.manage`, anything else
//!   `okta.users.manage` (else 403 `E0000006`).
//!
//! Error descriptions are our own wording, except "The DPoP proof JWT
//! header is missing.", quoted in docs/okta-behaviour.md, Authentication.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature;
use serde::Serialize;
use serde_json::{Value, json};

use super::lock;

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";
const READ: &str = "okta.users.read";
const MANAGE: &str = "okta.users.manage";
/// How far a proof's `iat` may be from the server's clock.
const PROOF_WINDOW_SECS: u64 = 300;

/// One OAuth service app registered in the simulated org.
#[derive(Debug, Clone)]
pub struct SimOAuth {
    pub client_id: String,
    /// The app's public keys as JWKs (`kty` RSA, `n`, `e`, optional `kid`).
    pub keys: Vec<Value>,
    /// Okta's default for new API service apps.
    pub require_dpop: bool,
    /// `expires_in` of issued tokens.
    pub token_lifetime: Duration,
    /// Scopes granted to the app.
    pub scopes: Vec<String>,
    /// Also demand a server nonce in the DPoP proofs of API calls.
    pub api_nonce: bool,
}

impl Default for SimOAuth {
    fn default() -> Self {
        SimOAuth {
            client_id: "0oa1simulatorapp0001".into(),
            keys: Vec::new(),
            require_dpop: true,
            token_lifetime: Duration::from_secs(3600),
            scopes: vec![READ.into(), MANAGE.into()],
            api_nonce: false,
        }
    }
}

/// One request to the token endpoint, as the simulator answered it
/// (never the assertion or the token).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub status: u16,
    pub error: Option<String>,
    pub scope: String,
    pub had_dpop: bool,
    pub had_nonce: bool,
    pub token_type: Option<String>,
}

struct Issued {
    expires: Instant,
    scopes: Vec<String>,
    /// The DPoP key's thumbprint for a DPoP-bound token.
    jkt: Option<String>,
}

struct Inner {
    tokens: HashMap<String, Issued>,
    seen_jti: HashSet<String>,
    token_nonce: String,
    api_nonce: String,
    log: Vec<TokenRequest>,
    counter: u64,
}

/// The authorization server's state.
pub(crate) struct OAuthServer {
    cfg: SimOAuth,
    inner: Mutex<Inner>,
}

/// Why an API call's credentials were refused.
pub(crate) struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub summary: String,
    pub headers: Vec<(&'static str, String)>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_text(bytes: usize) -> String {
    let mut v = vec![0u8; bytes];
    for b in &mut v {
        *b = rand::random();
    }
    URL_SAFE_NO_PAD.encode(v)
}

/// A compact JWS split and decoded, not yet verified.
struct Jws {
    header: Value,
    claims: Value,
    signed: String,
    signature: Vec<u8>,
}

fn decode_jws(text: &str) -> Option<Jws> {
    let mut parts = text.trim().split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = |p: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
    };
    Some(Jws {
        header: json(h)?,
        claims: json(c)?,
        signed: format!("{h}.{c}"),
        signature: URL_SAFE_NO_PAD.decode(s).ok()?,
    })
}

fn b64_field(v: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(v.get(name)?.as_str()?.trim_end_matches('='))
        .ok()
}

/// Verifies a JWS signature with a public JWK (RSA for RS256, P-256 for
/// ES256).
fn verify(jwk: &Value, alg: &str, jws: &Jws) -> bool {
    match (alg, jwk.get("kty").and_then(Value::as_str)) {
        ("RS256", Some("RSA")) => {
            let (Some(n), Some(e)) = (b64_field(jwk, "n"), b64_field(jwk, "e")) else {
                return false;
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    jws.signed.as_bytes(),
                    &jws.signature,
                )
                .is_ok()
        }
        ("ES256", Some("EC")) => {
            if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                return false;
            }
            let (Some(x), Some(y)) = (b64_field(jwk, "x"), b64_field(jwk, "y")) else {
                return false;
            };
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(jws.signed.as_bytes(), &jws.signature)
                .is_ok()
        }
        _ => false,
    }
}

/// RFC 7638 thumbprint of a public JWK.
fn thumbprint(jwk: &Value) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        _ => return None,
    };
    Some(URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    )))
}

fn num(claims: &Value, name: &str) -> Option<u64> {
    claims.get(name)?.as_u64()
}

fn text<'a>(claims: &'a Value, name: &str) -> Option<&'a str> {
    claims.get(name)?.as_str()
}

/// Percent-decodes a URL for comparing `htu` loosely: clients differ in
/// which characters of a path they leave encoded.
fn decoded(url: &str) -> String {
    let b = url.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&url[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a valid DPoP proof yields: its key's thumbprint and its nonce.
struct Proof {
    jkt: String,
    nonce: Option<String>,
}

impl OAuthServer {
    pub(crate) fn new(cfg: SimOAuth) -> OAuthServer {
        OAuthServer {
            cfg,
            inner: Mutex::new(Inner {
                tokens: HashMap::new(),
                seen_jti: HashSet::new(),
                token_nonce: random_text(12),
                api_nonce: random_text(12),
                log: Vec::new(),
                counter: 0,
            }),
        }
    }

    pub(crate) fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.inner).log.clone()
    }

    /// The access tokens issued so far, so tests can check that none
    /// leaks into a log or report.
    pub(crate) fn issued(&self) -> Vec<String> {
        lock(&self.inner).tokens.keys().cloned().collect()
    }

    /// Forgets every issued token, as an admin revoking them would.
    pub(crate) fn revoke_all(&self) {
        lock(&self.inner).tokens.clear();
    }

    /// Checks a DPoP proof's form, signature, method, URL, time and jti.
    fn check_proof(&self, proof: &str, method: &str, url: &str) -> Result<Proof, String> {
        let jws = decode_jws(proof).ok_or("the DPoP proof is not a JWT")?;
        if text(&jws.header, "typ") != Some("dpop+jwt") {
            return Err("the DPoP proof's typ must be dpop+jwt".into());
        }
        let alg = text(&jws.header, "alg").unwrap_or_default().to_string();
        let jwk = jws
            .header
            .get("jwk")
            .ok_or("the DPoP proof has no jwk header")?;
        if jwk.get("d").is_some() {
            return Err("the DPoP proof's jwk holds a private key".into());
        }
        if !verify(jwk, &alg, &jws) {
            return Err("the DPoP proof's signature does not verify with its jwk".into());
        }
        if text(&jws.claims, "htm") != Some(method) {
            return Err(format!("the DPoP proof's htm is not {method}"));
        }
        let htu = text(&jws.claims, "htu").unwrap_or_default();
        if htu != url && decoded(htu) != decoded(url) {
            return Err("the DPoP proof's htu does not match the request URL".into());
        }
        let iat = num(&jws.claims, "iat").ok_or("the DPoP proof has no iat")?;
        if iat.abs_diff(now_secs()) > PROOF_WINDOW_SECS {
            return Err("the DPoP proof's iat is too far from the server's time".into());
        }
        let jti = text(&jws.claims, "jti").ok_or("the DPoP proof has no jti")?;
        if !lock(&self.inner).seen_jti.insert(format!("dpop:{jti}")) {
            return Err("the DPoP proof's jti was used before".into());
        }
        Ok(Proof {
            jkt: thumbprint(jwk).ok_or("the DPoP proof's jwk is not a public key")?,
            nonce: text(&jws.claims, "nonce").map(str::to_string),
        })
    }

    fn check_assertion(&self, assertion: &str, aud: &str) -> Result<(), String> {
        let jws = decode_jws(assertion).ok_or("client_assertion is not a JWT")?;
        if text(&jws.header, "alg") != Some("RS256") {
            return Err("client_assertion must be signed with RS256".into());
        }
        let kid = text(&jws.header, "kid");
        let candidates: Vec<&Value> = self
            .cfg
            .keys
            .iter()
            .filter(|k| kid.is_none() || text(k, "kid") == kid)
            .collect();
        if candidates.is_empty() {
            return Err(
                "no public key with the client_assertion's kid is registered for the client".into(),
            );
        }
        if !candidates.iter().any(|k| verify(k, "RS256", &jws)) {
            return Err(
                "the client_assertion signature does not verify with the client's keys".into(),
            );
        }
        let c = &jws.claims;
        if text(c, "iss") != Some(self.cfg.client_id.as_str())
            || text(c, "sub") != Some(self.cfg.client_id.as_str())
        {
            return Err("client_assertion iss and sub must both be the client id".into());
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(s)) => s == aud,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(aud)),
            _ => false,
        };
        if !aud_ok {
            return Err("client_assertion aud must be this token endpoint's URL".into());
        }
        let now = now_secs();
        let exp = num(c, "exp").ok_or("client_assertion has no exp")?;
        if exp <= now {
            return Err("client_assertion has expired".into());
        }
        let iat = num(c, "iat").unwrap_or(now);
        if exp.saturating_sub(iat) > 3600 {
            return Err("client_assertion must expire within an hour of iat".into());
        }
        if let Some(jti) = text(c, "jti")
            && !lock(&self.inner)
                .seen_jti
                .insert(format!("assertion:{jti}"))
        {
            return Err("client_assertion jti was used before".into());
        }
        Ok(())
    }

    /// `POST /oauth2/v1/token`.
    pub(crate) fn token(
        &self,
        method: &Method,
        host: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response {
        let url = format!("http://{host}{TOKEN_PATH}");
        let form: HashMap<String, String> =
            reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
        let dpop = headers.get("dpop").and_then(|v| v.to_str().ok());
        let mut entry = TokenRequest {
            status: 200,
            error: None,
            scope: form.get("scope").cloned().unwrap_or_default(),
            had_dpop: dpop.is_some(),
            had_nonce: false,
            token_type: None,
        };
        let result = self.issue(method, &url, dpop, &form, &mut entry);
        let response = match result {
            Ok(body) => json_response(StatusCode::OK, body, None),
            Err((status, error, description, nonce)) => {
                entry.status = status.as_u16();
                entry.error = Some(error.to_string());
                json_response(
                    status,
                    json!({"error": error, "error_description": description}),
                    nonce,
                )
            }
        };
        lock(&self.inner).log.push(entry);
        response
    }

    #[allow(clippy::type_complexity)]
    fn issue(
        &self,
        method: &Method,
        url: &str,
        dpop: Option<&str>,
        form: &HashMap<String, String>,
        entry: &mut TokenRequest,
    ) -> Result<Value, (StatusCode, &'static str, String, Option<String>)> {
        let bad =
            |error: &'static str, d: &str| (StatusCode::BAD_REQUEST, error, d.to_string(), None);
        let unauthorized = |d: String| {
            (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                d,
                None::<String>,
            )
        };
        if method != Method::POST {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint takes POST".into(),
                None,
            ));
        }
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return Err(bad(
                "unsupported_grant_type",
                "only client_credentials is modelled",
            ));
        }
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err(unauthorized(
                "client authentication must be private_key_jwt".into(),
            ));
        }
        let assertion = form.get("client_assertion").map_or("", String::as_str);
        self.check_assertion(assertion, url).map_err(unauthorized)?;
        let requested: Vec<String> = form
            .get("scope")
            .map(|s| {
                s.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(bad("invalid_scope", "no scope was requested"));
        }
        let refused: Vec<&String> = requested
            .iter()
            .filter(|s| !self.cfg.scopes.contains(s))
            .collect();
        if !refused.is_empty() {
            return Err(bad(
                "invalid_scope",
                &format!(
                    "scopes not granted to the client: {}",
                    refused
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
        }
        let mut jkt = None;
        if self.cfg.require_dpop {
            let Some(proof) = dpop else {
                return Err(bad(
                    "invalid_dpop_proof",
                    "The DPoP proof JWT header is missing.",
                ));
            };
            let p = self
                .check_proof(proof, "POST", url)
                .map_err(|d| bad("invalid_dpop_proof", &d))?;
            entry.had_nonce = p.nonce.is_some();
            let current = lock(&self.inner).token_nonce.clone();
            if p.nonce.as_deref() != Some(current.as_str()) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "use_dpop_nonce",
                    "the authorization server requires a nonce in the DPoP proof".into(),
                    Some(current),
                ));
            }
            jkt = Some(p.jkt);
        }
        let token = random_text(32);
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        entry.token_type = Some(token_type.into());
        let mut inner = lock(&self.inner);
        inner.counter += 1;
        inner.tokens.insert(
            token.clone(),
            Issued {
                expires: Instant::now() + self.cfg.token_lifetime,
                scopes: requested.clone(),
                jkt,
            },
        );
        Ok(json!({
            "token_type": token_type,
            "expires_in": self.cfg.token_lifetime.as_secs().max(1),
            "access_token": token,
            "scope": requested.join(" "),
        }))
    }

    /// Checks a `Bearer`/`DPoP` credential on an API call to `url`.
    pub(crate) fn check_api(
        &self,
        scheme: &str,
        token: &str,
        dpop: Option<&str>,
        method: &Method,
        url: &str,
    ) -> Result<(), Rejection> {
        let invalid = |summary: &str, challenge: String| Rejection {
            status: 401,
            code: "E0000011",
            summary: format!("Invalid token provided ({summary})"),
            headers: vec![("www-authenticate", challenge)],
        };
        let (scopes, jkt) = {
            let inner = lock(&self.inner);
            let Some(issued) = inner.tokens.get(token) else {
                return Err(invalid(
                    "unknown token",
                    r#"Bearer error="invalid_token""#.into(),
                ));
            };
            if Instant::now() >= issued.expires {
                return Err(invalid(
                    "the token has expired",
                    r#"Bearer error="invalid_token", error_description="The access token is expired.""#.into(),
                ));
            }
            (issued.scopes.clone(), issued.jkt.clone())
        };
        match (scheme.to_ascii_lowercase().as_str(), jkt) {
            ("bearer", None) => {}
            ("dpop", Some(bound)) => {
                let challenge = |e: &str| format!(r#"DPoP error="{e}""#);
                let proof = dpop.ok_or_else(|| {
                    invalid(
                        "a DPoP token needs a DPoP proof",
                        challenge("invalid_dpop_proof"),
                    )
                })?;
                let p = self
                    .check_proof(proof, method.as_str(), url)
                    .map_err(|d| invalid(&d, challenge("invalid_dpop_proof")))?;
                if p.jkt != bound {
                    return Err(invalid(
                        "the DPoP proof is signed by another key than the token's",
                        challenge("invalid_dpop_proof"),
                    ));
                }
                let jws = decode_jws(proof).map(|j| j.claims).unwrap_or_default();
                let want_ath = URL_SAFE_NO_PAD.encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    token.as_bytes(),
                ));
                if text(&jws, "ath") != Some(want_ath.as_str()) {
                    return Err(invalid(
                        "the DPoP proof's ath does not match the token",
                        challenge("invalid_dpop_proof"),
                    ));
                }
                if self.cfg.api_nonce {
                    let current = lock(&self.inner).api_nonce.clone();
                    if p.nonce.as_deref() != Some(current.as_str()) {
                        let mut r = invalid(
                            "a nonce is required in the DPoP proof",
                            challenge("use_dpop_nonce"),
                        );
                        r.headers.push(("dpop-nonce", current));
                        return Err(r);
                    }
                }
            }
            ("bearer", Some(_)) => {
                return Err(invalid(
                    "a DPoP-bound token was sent as Bearer",
                    r#"DPoP error="invalid_token""#.into(),
                ));
            }
            _ => {
                return Err(invalid(
                    "the scheme does not match the token type",
                    r#"Bearer error="invalid_token""#.into(),
                ));
            }
        }
        let allowed = if method == Method::GET {
            scopes.iter().any(|s| s == READ || s == MANAGE)
        } else {
            scopes.iter().any(|s| s == MANAGE)
        };
        if !allowed {
            return Err(Rejection {
                status: 403,
                code: "E0000006",
                summary: "You do not have permission to perform the requested action".into(),
                headers: vec![(
                    "www-authenticate",
                    r#"Bearer error="insufficient_scope""#.into(),
                )],
            });
        }
        Ok(())
    }
}

fn json_response(status: StatusCode, body: Value, nonce: Option<String>) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(n) = nonce
        && let Ok(v) = HeaderValue::from_str(&n)
    {
        h.insert("dpop-nonce", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_thumbprint_example() {
        // The example key of RFC 7638 §3.1 and its published thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn htu_comparison_tolerates_encoding_differences_only() {
        assert_eq!(
            decoded("http://h/api/v1/users/a%2Bb%40c"),
            decoded("http://h/api/v1/users/a+b@c")
        );
        assert_ne!(
            decoded("http://h/api/v1/users/x"),
            decoded("http://h/api/v1/users/y")
        );
    }
}
