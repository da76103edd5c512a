//! HTTP wiring: routing Okta paths by hand (so trailing slashes, encoded
//! characters and 405s behave like Okta rather than like axum), the
//! per-request pipeline (concurrency, latency, rate limit, auth, faults),
//! common headers, the request log and the `/__sim/` admin endpoints.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::faults::{FaultAction, FaultBook, FaultCtx};
use super::ratelimit::{Bucket, Concurrency, RateHeaders, RateLimiter};
use super::rules::{self, epoch_secs_floor, percent_decode};
use super::state::{ApiError, OrgState, Reply};
use super::{Fault, SimConfig, lock};
use crate::okta::wire::{
    ErrorBody, ErrorCause, X_OKTA_REQUEST_ID, X_RATE_LIMIT_LIMIT, X_RATE_LIMIT_REMAINING,
    X_RATE_LIMIT_RESET,
};

/// Bodies larger than this are refused; enroll bodies are tiny.
const MAX_BODY: usize = 1 << 20;
/// How far ahead a concurrency 429 puts its (advisory) `Reset`.
const CONCURRENCY_RESET_HINT_SECS: u64 = 60;

/// One `/api/v1` request as the simulator saw and answered it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// Arrival order, from 1.
    pub seq: u64,
    pub method: String,
    /// The path exactly as received, still percent-encoded.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The request body: JSON when it parses, else a string; `None` if empty.
    pub body: Option<Value>,
    /// Status sent; 0 when the connection was dropped instead.
    pub status: u16,
    /// `errorCode` of an error answer.
    pub error_code: Option<String>,
    pub request_id: String,
    /// Milliseconds since the simulator started.
    pub t_start_ms: u64,
    pub t_end_ms: u64,
    /// `SSWS`, `Bearer`, ... — never the credential itself.
    pub auth_scheme: Option<String>,
    /// The fault rule that fired, e.g. `#0 performThenDrop`.
    pub fault: Option<String>,
    pub dropped: bool,
    /// Arrival time by the simulator's own clock (clock skew included),
    /// epoch milliseconds: what a `Reset` header is measured against.
    #[serde(default)]
    pub server_time_ms: u64,
    /// Headers and the response, recorded only while capture is on (see
    /// [`SimSettings`]); what the contract check validates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
}

/// The parts of one exchange a contract check needs beyond
/// [`LoggedRequest`]: request headers (credentials redacted), and the
/// response's headers and body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    /// Lower-case names; `authorization` keeps only its scheme.
    pub request_headers: BTreeMap<String, String>,
    pub response_headers: BTreeMap<String, String>,
    /// The JSON body sent, `None` for an empty one (204, dropped).
    pub response_body: Option<Value>,
}

/// Settings that can change while the simulator runs, through
/// `POST /__sim/settings` or [`super::Simulator::set_settings`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimSettings {
    /// Record headers and response bodies in the request log.
    #[serde(default)]
    pub capture: bool,
    /// How far the simulator's clock is from the machine's, in seconds:
    /// `Date` and every `X-Rate-Limit-Reset` move with it, as they would
    /// for a client whose own clock is off by the opposite amount.
    #[serde(default)]
    pub clock_skew_secs: i64,
}

/// Everything the request handlers share.
pub(crate) struct Shared {
    pub cfg: SimConfig,
    pub started: Instant,
    pub org: Mutex<OrgState>,
    pub limiter: RateLimiter,
    pub concurrency: Concurrency,
    pub faults: FaultBook,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub seq: AtomicU64,
    /// The OAuth authorization server, when `SimConfig::oauth` is set.
    pub oauth: Option<super::oauth::OAuthServer>,
    pub settings: Mutex<SimSettings>,
}

impl Shared {
    pub(crate) fn new(cfg: SimConfig, org: OrgState) -> Shared {
        Shared {
            limiter: RateLimiter::new(cfg.rate_limit, cfg.window),
            concurrency: Concurrency::new(cfg.concurrency),
            oauth: cfg.oauth.clone().map(super::oauth::OAuthServer::new),
            cfg,
            started: Instant::now(),
            org: Mutex::new(org),
            faults: FaultBook::default(),
            log: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            settings: Mutex::new(SimSettings::default()),
        }
    }

    pub(crate) fn settings(&self) -> SimSettings {
        *lock(&self.settings)
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        let mut v = lock(&self.log).clone();
        v.sort_by_key(|r| r.seq);
        v
    }

    pub(crate) fn state_json(&self) -> Value {
        let org = lock(&self.org);
        json!({ "users": org.snapshots(), "sentOtps": org.otps() })
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    if req.uri().path().starts_with("/__sim/") {
        return admin(&shared, req).await;
    }
    if req.uri().path() == super::oauth::TOKEN_PATH
        && let Some(oauth) = &shared.oauth
    {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return oauth.token(&parts.method, host, &parts.headers, &body);
    }
    api(&shared, &conn, req).await
}

// ----- routing -------------------------------------------------------------

/// The Okta operations the simulator knows, keyed by decoded path segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    ListUsers,
    User(String),
    Factors(String),
    Catalog(String),
    Factor(String, String),
    Activate(String, String),
    Resend(String, String),
    Unknown,
}

impl Route {
    /// Decodes the whole path before splitting it, so an encoded `/` in a
    /// login becomes extra segments and never matches, as at Okta (U1).
    fn parse(decoded: &str) -> Route {
        let Some(rest) = decoded.strip_prefix("/api/v1/") else {
            return Route::Unknown;
        };
        let mut segs: Vec<&str> = rest.split('/').collect();
        // A single trailing slash names the same resource (so a DELETE on
        // `…/factors/` reaches the collection and gets 405, per D3).
        if segs.len() > 1 && segs.last() == Some(&"") {
            segs.pop();
        }
        let s = |x: &str| x.to_string();
        match segs.as_slice() {
            ["users"] => Route::ListUsers,
            ["users", id] => Route::User(s(id)),
            ["users", id, "factors"] => Route::Factors(s(id)),
            ["users", id, "factors", "catalog"] => Route::Catalog(s(id)),
            ["users", id, "factors", f] => Route::Factor(s(id), s(f)),
            ["users", id, "factors", f, "lifecycle", "activate"] => Route::Activate(s(id), s(f)),
            ["users", id, "factors", f, "resend"] => Route::Resend(s(id), s(f)),
            _ => Route::Unknown,
        }
    }

    fn allowed(&self) -> &'static str {
        match self {
            Route::ListUsers | Route::Catalog(_) => "GET",
            Route::User(_) | Route::Factors(_) => "GET, POST",
            Route::Factor(..) => "GET, DELETE",
            Route::Activate(..) | Route::Resend(..) => "POST",
            Route::Unknown => "",
        }
    }

    fn op(&self, m: &Method) -> &'static str {
        match (self, m.as_str()) {
            (Route::ListUsers, "GET") => "listUsers",
            (Route::User(_), "GET") => "getUser",
            (Route::User(_), "POST") => "updateUser",
            (Route::Factors(_), "GET") => "listFactors",
            (Route::Factors(_), "POST") => "enrollFactor",
            (Route::Catalog(_), "GET") => "listSupportedFactors",
            (Route::Factor(..), "GET") => "getFactor",
            (Route::Factor(..), "DELETE") => "unenrollFactor",
            (Route::Activate(..), "POST") => "activateFactor",
            (Route::Resend(..), "POST") => "resendEnrollFactor",
            _ => "unknown",
        }
    }

    fn bucket(&self, m: &Method) -> Bucket {
        match self {
            Route::User(_) if m == Method::GET => Bucket::GetUser,
            Route::User(_) => Bucket::UserWrite,
            Route::Unknown => Bucket::Other,
            _ => Bucket::Users,
        }
    }

    fn user_key(&self) -> Option<&str> {
        match self {
            Route::User(u)
            | Route::Factors(u)
            | Route::Catalog(u)
            | Route::Factor(u, _)
            | Route::Activate(u, _)
            | Route::Resend(u, _) => Some(u),
            Route::ListUsers | Route::Unknown => None,
        }
    }

    fn factor_id(&self) -> Option<&str> {
        match self {
            Route::Factor(_, f) | Route::Activate(_, f) | Route::Resend(_, f) => Some(f),
            _ => None,
        }
    }
}

// ----- the /api/v1 pipeline ------------------------------------------------

/// Which `X-Rate-Limit-*` values a response carries.
#[derive(Debug, Clone, Copy)]
enum RateInfo {
    Bucket(RateHeaders),
    /// Concurrency 429: 0/0 and a reset hint (R4).
    Concurrency,
    /// A scripted 429: this limit, and `Reset` = `Date` + offset.
    Scripted {
        limit: u32,
        reset_in_secs: u64,
    },
}

struct Outcome {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    error_code: Option<String>,
    rate: RateInfo,
    fault: Option<String>,
    drop_connection: bool,
}

impl Outcome {
    fn from_reply(reply: Reply, rate: RateInfo) -> Outcome {
        Outcome {
            status: reply.status,
            body: reply.body,
            headers: reply.headers,
            error_code: None,
            rate,
            fault: None,
            drop_connection: false,
        }
    }

    fn from_error(e: ApiError, rate: RateInfo) -> Outcome {
        let body = ErrorBody {
            error_code: e.code.clone(),
            error_summary: e.summary,
            error_link: Some(e.code.clone()),
            error_id: Some(rules::new_error_id()),
            error_causes: e
                .causes
                .into_iter()
                .map(|c| ErrorCause { error_summary: c })
                .collect(),
        };
        let mut headers = Vec::new();
        if let Some(allow) = e.allow {
            headers.push(("allow", allow.to_string()));
        }
        Outcome {
            status: e.status,
            body: serde_json::to_value(body).ok(),
            headers,
            error_code: Some(e.code),
            rate,
            fault: None,
            drop_connection: false,
        }
    }
}

fn rate_limited() -> ApiError {
    ApiError::new(
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
    )
}

async fn api(shared: &Arc<Shared>, conn: &ConnHandle, req: Request) -> Response {
    let t_start_ms = shared.ms();
    let settings = shared.settings();
    let server_time_ms = epoch_ms(skewed(SystemTime::now(), settings.clock_skew_secs));
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let request_id = rules::new_request_id(seq);
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let query_string = parts.uri.query().map(str::to_string);
    let query: Vec<(String, String)> = Query::try_from_uri(&parts.uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let auth_scheme = authorization
        .as_deref()
        .and_then(|a| a.split_whitespace().next())
        .map(str::to_string);
    let request_headers = settings
        .capture
        .then(|| captured_request_headers(&parts.headers));

    let slot = shared.concurrency.try_enter();
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let logged_body = match &body {
        Ok(b) if !b.is_empty() => Some(
            serde_json::from_slice::<Value>(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
        ),
        _ => None,
    };

    let outcome = match slot {
        None => Outcome::from_error(rate_limited(), RateInfo::Concurrency),
        Some(_slot) => {
            if !shared.cfg.latency.is_zero() {
                tokio::time::sleep(shared.cfg.latency).await;
            }
            let req = ApiRequest {
                method: &parts.method,
                raw_path: &raw_path,
                query: &query,
                authorization: authorization.as_deref(),
                headers: &parts.headers,
                body,
            };
            process(shared, req).await
            // `_slot` is released here: the request stops counting as in
            // flight only once its answer is ready.
        }
    };

    let t_end_ms = shared.ms();
    let status = outcome.status;
    let error_code = outcome.error_code.clone();
    let fault = outcome.fault.clone();
    let dropped = outcome.drop_connection;
    let response_body = request_headers.as_ref().and(outcome.body.clone());
    let resp = render(outcome, &request_id, shared.settings().clock_skew_secs);
    let exchange = request_headers.map(|request_headers| Exchange {
        request_headers,
        response_headers: resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        response_body: if dropped { None } else { response_body },
    });
    lock(&shared.log).push(LoggedRequest {
        seq,
        method: parts.method.to_string(),
        path: raw_path,
        query: query_string,
        body: logged_body,
        status: if dropped { 0 } else { status },
        error_code,
        request_id,
        t_start_ms,
        t_end_ms,
        auth_scheme,
        fault,
        dropped,
        server_time_ms,
        exchange,
    });
    if dropped {
        conn.kill();
    }
    resp
}

/// The request headers a contract check reads; the credential is cut to
/// its scheme so the log never holds a token.
fn captured_request_headers(h: &axum::http::HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .filter_map(|(k, v)| {
            let name = k.as_str().to_string();
            let value = v.to_str().ok()?;
            let value = if name == "authorization" {
                let scheme = value.split_whitespace().next().unwrap_or_default();
                format!("{scheme} [redacted]")
            } else {
                value.to_string()
            };
            Some((name, value))
        })
        .collect()
}

fn skewed(t: SystemTime, skew_secs: i64) -> SystemTime {
    let d = Duration::from_secs(skew_secs.unsigned_abs());
    if skew_secs >= 0 { t + d } else { t - d }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct ApiRequest<'a> {
    method: &'a Method,
    raw_path: &'a str,
    query: &'a Vec<(String, String)>,
    authorization: Option<&'a str>,
    headers: &'a axum::http::HeaderMap,
    body: Result<Bytes, axum::Error>,
}

async fn process(shared: &Arc<Shared>, req: ApiRequest<'_>) -> Outcome {
    let decoded = percent_decode(req.raw_path);
    let route = Route::parse(&decoded);
    let rate = match shared.limiter.take(route.bucket(req.method)) {
        Ok(h) => RateInfo::Bucket(h),
        Err(h) => return Outcome::from_error(rate_limited(), RateInfo::Bucket(h)),
    };
    let scheme = req
        .authorization
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_default();
    match &shared.oauth {
        // OAuth access tokens (oauth.rs); SSWS as before.
        Some(oauth)
            if scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("DPoP") =>
        {
            let token = req
                .authorization
                .and_then(|a| a.split_whitespace().nth(1))
                .unwrap_or_default();
            let dpop = req.headers.get("dpop").and_then(|v| v.to_str().ok());
            let host = req
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let url = format!("http://{host}{}", req.raw_path);
            if let Err(r) = oauth.check_api(scheme, token, dpop, req.method, &url) {
                let mut out = Outcome::from_error(ApiError::new(r.status, r.code, r.summary), rate);
                out.headers.extend(r.headers);
                return out;
            }
        }
        _ if !auth_ok(shared.cfg.token.as_deref(), req.authorization) => {
            return Outcome::from_error(
                ApiError::new(401, "E0000011", "Invalid token provided"),
                rate,
            );
        }
        _ => {}
    }
    let Ok(body) = req.body else {
        return Outcome::from_error(ApiError::bad_body(), rate);
    };

    let mut fault = None;
    if !shared.faults.is_empty() {
        let ctx = fault_ctx(shared, &route, req.method, req.raw_path, &decoded, &body);
        fault = shared.faults.take(&ctx);
    }
    let label = fault.as_ref().map(|(_, l)| l.clone());
    let with_label = |mut o: Outcome| {
        o.fault = label.clone();
        o
    };
    let mut after: Option<FaultAction> = None;
    if let Some((action, _)) = fault {
        match action {
            FaultAction::Respond {
                status,
                error_code,
                error_summary,
                error_causes,
            } => {
                let mut e = ApiError::new(status, &error_code, error_summary);
                e.causes = error_causes;
                return with_label(Outcome::from_error(e, rate));
            }
            FaultAction::RateLimited {
                limit,
                reset_in_secs,
            } => {
                return with_label(Outcome::from_error(
                    rate_limited(),
                    RateInfo::Scripted {
                        limit,
                        reset_in_secs,
                    },
                ));
            }
            FaultAction::Drop => {
                let mut o = Outcome::from_error(ApiError::new(500, "E0000009", "dropped"), rate);
                o.drop_connection = true;
                return with_label(o);
            }
            FaultAction::Delay { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            a @ (FaultAction::PerformThenFail { .. } | FaultAction::PerformThenDrop) => {
                after = Some(a);
            }
        }
    }

    let outcome = match perform(shared, &route, &decoded, req.method, req.query, &body) {
        Ok(reply) => Outcome::from_reply(reply, rate),
        Err(e) => Outcome::from_error(e, rate),
    };
    let outcome = match after {
        Some(FaultAction::PerformThenFail {
            status,
            error_code,
            error_summary,
        }) => Outcome::from_error(
            ApiError::new(
                status,
                error_code.as_deref().unwrap_or("E0000009"),
                error_summary.unwrap_or_else(|| "Internal Server Error".to_string()),
            ),
            rate,
        ),
        Some(FaultAction::PerformThenDrop) => Outcome {
            drop_connection: true,
            ..outcome
        },
        _ => outcome,
    };
    with_label(outcome)
}

fn auth_ok(expected: Option<&str>, header: Option<&str>) -> bool {
    let Some((scheme, token)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    let token = token.trim();
    scheme.eq_ignore_ascii_case("SSWS") && !token.is_empty() && expected.is_none_or(|t| t == token)
}

fn fault_ctx<'a>(
    shared: &Shared,
    route: &Route,
    method: &'a Method,
    raw_path: &'a str,
    decoded: &'a str,
    body: &Bytes,
) -> FaultCtx<'a> {
    let op = route.op(method);
    let org = lock(&shared.org);
    let user_id = route
        .user_key()
        .map(|k| org.resolve_user_id(k).unwrap_or_else(|| k.to_string()));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let phone = parsed
        .as_ref()
        .and_then(|v| v.pointer("/profile/phoneNumber"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let factor_type = match (route.factor_id(), &user_id) {
        (Some(f), Some(u)) => org.factor_type_of(u, f),
        _ => parsed
            .as_ref()
            .and_then(|v| v.get("factorType"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    FaultCtx {
        method: method.as_str(),
        raw_path,
        decoded_path: decoded,
        op,
        user_id,
        phone,
        factor_type,
    }
}

fn perform(
    shared: &Shared,
    route: &Route,
    decoded: &str,
    method: &Method,
    query: &Vec<(String, String)>,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let allowed = route.allowed();
    if route == &Route::Unknown {
        return Err(ApiError::new(
            404,
            "E0000007",
            format!("Not found: Resource not found: {decoded}"),
        ));
    }
    if !allowed.split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::method_not_allowed(allowed));
    }
    let now = SystemTime::now();
    let mono = Instant::now();
    let mut org = lock(&shared.org);
    match (route, method.as_str()) {
        (Route::ListUsers, _) => org.list_users(query),
        // A `?` that arrived encoded is part of no login Okta can look up
        // by path (U1), so it finds nobody.
        (Route::User(k), _) if k.contains('?') => Err(ApiError::user_not_found(k)),
        (Route::User(k), "GET") => org.get_user(k),
        (Route::User(k), _) => org.update_user(k, body, now),
        (Route::Factors(u), "GET") => org.list_factors(u),
        (Route::Factors(u), _) => org.enroll(u, query, body, now, mono),
        (Route::Catalog(u), _) => org.catalog(u),
        (Route::Factor(u, f), "GET") => org.get_factor(u, f),
        (Route::Factor(u, f), _) => org.delete_factor(u, f, query),
        (Route::Activate(u, f), _) => org.activate(u, f, body, now),
        (Route::Resend(u, f), _) => org.resend(u, f, now, mono),
        (Route::Unknown, _) => Err(ApiError::new(404, "E0000007", "Not found")),
    }
}

/// Builds the response. `Date` and bucket resets (computed on the
/// machine's clock) move by the simulator's clock skew.
fn render(o: Outcome, request_id: &str, skew_secs: i64) -> Response {
    let date_secs = epoch_secs_floor(skewed(SystemTime::now(), skew_secs));
    let (limit, remaining, reset) = match o.rate {
        RateInfo::Bucket(h) => (
            h.limit,
            h.remaining,
            h.reset.saturating_add_signed(skew_secs),
        ),
        RateInfo::Concurrency => (0, 0, date_secs + CONCURRENCY_RESET_HINT_SECS),
        RateInfo::Scripted {
            limit,
            reset_in_secs,
        } => (limit, 0, date_secs + reset_in_secs),
    };
    let status = StatusCode::from_u16(o.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match &o.body {
        Some(v) => {
            let mut r = Response::new(Body::from(v.to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        None => Response::new(Body::empty()),
    };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(date_secs));
    let mut put = |name: &str, value: String| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    };
    put("date", date);
    put(X_RATE_LIMIT_LIMIT, limit.to_string());
    put(X_RATE_LIMIT_REMAINING, remaining.to_string());
    put(X_RATE_LIMIT_RESET, reset.to_string());
    put(X_OKTA_REQUEST_ID, request_id.to_string());
    for (name, value) in o.headers {
        put(name, value);
    }
    resp
}

// ----- admin ---------------------------------------------------------------

async fn admin(shared: &Arc<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    match (method.as_str(), path.as_str()) {
        ("GET", "/__sim/state") => axum::Json(shared.state_json()).into_response(),
        ("GET", "/__sim/requests") => axum::Json(shared.requests()).into_response(),
        ("POST", "/__sim/reset-log") => {
            lock(&shared.log).clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/__sim/settings") => axum::Json(shared.settings()).into_response(),
        ("POST", "/__sim/settings") => {
            let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            match serde_json::from_slice::<SimSettings>(&bytes) {
                Ok(s) => {
                    *lock(&shared.settings) = s;
                    axum::Json(s).into_response()
                }
                Err(e) => admin_error(StatusCode::BAD_REQUEST, &format!("bad settings JSON: {e}")),
            }
        }
        ("GET", "/__sim/faults") => axum::Json(shared.faults.list()).into_response(),
        ("DELETE", "/__sim/faults") => {
            shared.faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "/__sim/faults") => {
            let bytes = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
                Ok(b) => b,
                Err(e) => return admin_error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum OneOrMany {
                One(Box<Fault>),
                Many(Vec<Fault>),
            }
            match serde_json::from_slice::<OneOrMany>(&bytes) {
                Ok(parsed) => {
                    let faults = match parsed {
                        OneOrMany::One(f) => vec![*f],
                        OneOrMany::Many(v) => v,
                    };
                    let added = faults.len();
                    for f in faults {
                        shared.faults.add(f);
                    }
                    (StatusCode::CREATED, axum::Json(json!({ "added": added }))).into_response()
                }
                Err(e) => {
                    // The untagged error hides the real one; report the
                    // single-rule parse error, the common case.
                    let detail = serde_json::from_slice::<Fault>(&bytes)
                        .err()
                        .map_or_else(|| e.to_string(), |e| e.to_string());
                    admin_error(
                        StatusCode::BAD_REQUEST,
                        &format!("bad fault JSON: {detail}"),
                    )
                }
            }
        }
        _ => admin_error(
            StatusCode::NOT_FOUND,
            "unknown admin endpoint; see the okta_phone_migrate::simulator module docs",
        ),
    }
}

fn admin_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "error": msg }))).into_response()
}

// ----- connections that can be dropped on purpose --------------------------

/// A TCP listener whose connections a handler can cut before it answers,
/// which is how "the request happened but the client never heard" is
/// simulated without panicking inside the server.
pub(crate) struct KillableListener(pub TcpListener);

pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

/// A handler's grip on its connection.
#[derive(Clone)]
pub(crate) struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    fn kill(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    // Requests are small and answers immediate; Nagle would
                    // only add delay to every test.
                    let _ = inner.set_nodelay(true);
                    let io = KillableStream {
                        inner,
                        killed: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, addr);
                }
                // Out of descriptors and similar: back off instead of
                // spinning, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        ConnHandle(stream.io().killed.clone())
    }
}

impl KillableStream {
    fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "dropped by simulator fault",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_okta_paths() {
        assert_eq!(Route::parse("/api/v1/users"), Route::ListUsers);
        assert_eq!(Route::parse("/api/v1/users/"), Route::ListUsers);
        assert_eq!(
            Route::parse("/api/v1/users/a@b.com"),
            Route::User("a@b.com".into())
        );
        assert_eq!(Route::parse("/api/v1/users/a/b@c.com"), Route::Unknown);
        assert_eq!(
            Route::parse("/api/v1/users/u/factors/"),
            Route::Factors("u".into())
        );
        assert_eq!(
            Route::parse("/api/v1/users/u/factors/catalog"),
            Route::Catalog("u".into())
        );
        assert_eq!(
            Route::parse("/api/v1/users/u/factors/f/lifecycle/activate"),
            Route::Activate("u".into(), "f".into())
        );
        assert_eq!(Route::parse("/api/v2/users"), Route::Unknown);
        assert_eq!(
            Route::User("x".into()).bucket(&Method::GET),
            Bucket::GetUser
        );
        assert_eq!(
            Route::User("x".into()).bucket(&Method::POST),
            Bucket::UserWrite
        );
        assert_eq!(
            Route::Factors("x".into()).bucket(&Method::GET),
            Bucket::Users
        );
    }

    #[test]
    fn only_ssws_with_the_right_token_passes() {
        assert!(auth_ok(None, Some("SSWS abc")));
        assert!(auth_ok(Some("abc"), Some("SSWS abc")));
        assert!(!auth_ok(Some("abc"), Some("SSWS abd")));
        assert!(!auth_ok(None, Some("SSWS ")));
        assert!(!auth_ok(None, Some("Bearer abc")));
        assert!(!auth_ok(None, None));
    }
}
