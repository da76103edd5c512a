//! A stateful stand-in for the part of Okta's management API the tool uses,
//! so the updater can be run and tested end to end without an org.
//! Kept apart from the product's core: it shares only `okta::wire` with the
//! client, so a misreading of Okta in one is not silently mirrored in the
//! other.
//!
//! # What it models
//!
//! The rules graded CONFIRMED or SUPPORTED in `docs/okta-behaviour.md`, and the
//! suggested model for the UNVERIFIED ones:
//!
//! - `GET /api/v1/users/{idOrLogin}` by id, login (any case) or unambiguous
//!   short name; `DEPROVISIONED` users are returned. The path is decoded
//!   before it is split, so a login with `/` never matches (404), and an
//!   encoded `?` matches nobody.
//! - `GET /api/v1/users` with `search` (values compared ignoring case, any
//!   `profile.*`, `id`, `status`), `filter` (exact, the spec's attribute
//!   list) — only `attr eq "value"` clauses joined by all-`or` or all-`and`;
//!   anything else is 400 `E0000031` — `q`, `limit` (default 200), and
//!   `after` paging with a `Link` header.
//! - `POST /api/v1/users/{idOrLogin}`: partial profile update.
//! - `/api/v1/users/{userId}/factors[...]`: list, get, enroll (sms and call,
//!   rules F1–F12), delete (204; `removeRecoveryEnrollment=true` also drops
//!   the stored phone), catalog, activate with the "sent" passcode, resend.
//!   Ids only (a login gives 404 "(User)"); a `DEPROVISIONED` user is 404.
//!   Each user keeps, per factor type, stored phone records that outlive a
//!   deleted factor; a verified one blocks a different number unless
//!   `updatePhone=true` (F3/F4) and brings the same number back ACTIVE with
//!   no OTP (F5). `SimConfig::oie` allows several sms factors.
//! - Auth: `Authorization: SSWS <token>`, else 401 `E0000011`; with
//!   `SimConfig::oauth`, also OAuth for a service app: `POST
//!   /oauth2/v1/token` (private_key_jwt, DPoP with a nonce) and `Bearer` /
//!   `DPoP` tokens with scopes on API calls (see `oauth.rs`).
//! - Rate limits (docs/okta-behaviour.md, R1–R4): buckets for `GET /users/{idOrLogin}`, for
//!   `/users` plus every factor call, for `POST /users/{id}`, and for the
//!   rest; windows open on first use; the last slot answers 200 with
//!   `Remaining: 0`; then 429 `E0000047`. More than `concurrency` requests
//!   in flight: 429 `E0000047` with limit and remaining 0.
//! - Every `/api/v1` answer carries `X-Rate-Limit-Limit/-Remaining/-Reset`,
//!   `X-Okta-Request-Id` and `Date`; errors use Okta's `Error` body.
//!
//! Not modelled: other OAuth grants and client authentications, admin
//! roles (403s other than missing scopes), `expand`, `fields`,
//! `sortBy`, search's eventual consistency, the enrollment policy that can
//! hide factors, per-user SMS quotas, factor types other than sms/call at
//! enroll, user creation and lifecycle calls. Error texts that docs/okta-behaviour.md
//! does not quote (e.g. the causes of a malformed enroll body, and the
//! summaries of `E0000031` and `E0000121`) are our own wording.
//!
//! # `org.json`
//!
//! ```json
//! {"users": [{
//!   "id": "00u1abc0000000000001",           // required, unique
//!   "status": "ACTIVE",                      // default ACTIVE
//!   "created": "2023-04-01T09:00:00.000Z",   // optional
//!   "profile": {"login": "ana.lima@example.com", "email": "...",
//!               "firstName": "Ana", "lastName": "Lima", "mobilePhone": null},
//!   "factors": [{"id": "mbl...",             // optional: a stable id is derived
//!                "factorType": "sms", "provider": "OKTA", "status": "ACTIVE",
//!                "profile": {"phoneNumber": "+12135550101"}}],
//!   "storedPhones": [{"factorType": "sms", "phoneNumber": "+12135550188",
//!                     "verified": true}]     // optional: a phone left by a delete
//! }]}
//! ```
//!
//! `profile.login` is required and unique (ignoring case). Phone numbers are
//! stored as `+digits`. Factors other than sms/call are kept and listed as given.
//!
//! # Admin endpoints
//!
//! Under `/__sim/`: no auth, no rate limit, not in the request log.
//!
//! - `GET /__sim/state`: `{"users": [UserSnapshot], "sentOtps": [SentOtp]}`
//!   (camelCase: `id`, `status`, `profile`, `factors` as Okta lists them,
//!   `storedPhones` with `phoneNumber`, `verified`, `inUse`).
//! - `GET /__sim/requests`: every `/api/v1` request, [`LoggedRequest`]:
//!   `seq`, `method`, `path` (raw, still percent-encoded), `query`, `body`,
//!   `status` (0 if dropped), `errorCode`, `requestId`, `tStartMs`,
//!   `tEndMs`, `authScheme` (never the token), `fault`, `dropped`,
//!   `serverTimeMs` (arrival by the simulator's clock, epoch ms) and, while
//!   capture is on, `exchange`: `requestHeaders` (the credential cut to its
//!   scheme), `responseHeaders`, `responseBody`.
//! - `POST /__sim/reset-log`: empties the request log.
//! - `GET|POST /__sim/settings`: [`SimSettings`], e.g. `{"capture": true,
//!   "clockSkewSecs": -300}`: capture headers and response bodies in the
//!   request log (for the contract check in `contract/`), and run the
//!   simulator's clock (`Date`, every `Reset`) that far from the machine's.
//! - `GET /__sim/faults`: the rules with `hits` and `skipped` counts.
//! - `POST /__sim/faults`: adds one [`Fault`] or an array of them (201).
//! - `DELETE /__sim/faults`: removes all rules.
//!
//! A fault, in JSON:
//!
//! ```json
//! {"match": {"method": "POST", "op": "enrollFactor", "pathContains": "/factors",
//!            "userId": "00u1abc0000000000001", "phone": "+12135550101",
//!            "factorType": "sms"},
//!  "action": {"respond": {"status": 500, "errorCode": "E0000009",
//!                         "errorSummary": "Internal Server Error", "errorCauses": []}},
//!  "times": 1, "skip": 0}
//! ```
//!
//! Other actions: `{"delay": {"ms": 1500}}`, `{"performThenFail": {"status":
//! 500}}` (optional `errorCode`, `errorSummary`), `"performThenDrop"`,
//! `"drop"`, `{"rateLimited": {"limit": 600, "resetInSecs": 3}}`. All
//! `match` fields are optional; `times` absent means always.

mod faults;
mod oauth;
mod ratelimit;
mod rules;
mod server;
mod state;

#[cfg(test)]
mod tests;

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultAction, FaultMatch};
pub use oauth::{SimOAuth, TokenRequest};
pub use server::{Exchange, LoggedRequest, SimSettings};
pub use state::{SentOtp, StoredPhone, UserSnapshot};

use server::{ConnHandle, KillableListener, Shared};
use state::OrgState;

/// How long [`Simulator::shutdown`] lets open requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The SSWS token it accepts; `None` accepts any non-empty token.
    pub token: Option<String>,
    /// Requests per window, per rate-limit bucket.
    pub rate_limit: u32,
    /// Length of a rate-limit window.
    pub window: Duration,
    /// Requests allowed in flight at once (org-wide).
    pub concurrency: usize,
    /// Added to every `/api/v1/` response.
    pub latency: Duration,
    /// Identity Engine mode: several sms factors per user are possible.
    pub oie: bool,
    /// An OAuth service app the org accepts besides SSWS tokens.
    pub oauth: Option<SimOAuth>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: None,
            rate_limit: 600,
            window: Duration::from_secs(60),
            concurrency: 75,
            latency: Duration::ZERO,
            oie: false,
            oauth: None,
        }
    }
}

/// The org's users and factors, as loaded from an `org.json` file (format
/// in the module docs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgData {
    #[serde(default)]
    pub users: Vec<OrgUser>,
}

/// One user of [`OrgData`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgUser {
    pub id: String,
    #[serde(default = "active")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub profile: Map<String, Value>,
    #[serde(default)]
    pub factors: Vec<OrgFactor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stored_phones: Vec<OrgStoredPhone>,
}

/// One enrolled factor of an [`OrgUser`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgFactor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub factor_type: String,
    #[serde(default = "okta")]
    pub provider: String,
    #[serde(default = "active")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Value>,
}

/// A phone record with no factor on it, e.g. left behind by a delete.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgStoredPhone {
    #[serde(default = "sms")]
    pub factor_type: String,
    pub phone_number: String,
    #[serde(default = "yes")]
    pub verified: bool,
}

fn active() -> String {
    "ACTIVE".into()
}
fn okta() -> String {
    "OKTA".into()
}
fn sms() -> String {
    "sms".into()
}
fn yes() -> bool {
    true
}

impl OrgData {
    pub fn load(path: &Path) -> anyhow::Result<OrgData> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading org data {}", path.display()))?;
        let org: OrgData = serde_json::from_str(&text)
            .with_context(|| format!("parsing org data {}", path.display()))?;
        org.validate()
            .map_err(|e| anyhow::anyhow!("org data {}: {e}", path.display()))?;
        Ok(org)
    }

    /// Checks what the simulator relies on: unique ids and logins, and
    /// phone numbers it would itself accept.
    pub fn validate(&self) -> Result<(), String> {
        let mut ids = std::collections::HashSet::new();
        let mut logins = std::collections::HashSet::new();
        let mut factor_ids = std::collections::HashSet::new();
        for u in &self.users {
            if u.id.is_empty() || !ids.insert(u.id.as_str()) {
                return Err(format!("user id {:?} is empty or repeated", u.id));
            }
            let login = u
                .profile
                .get("login")
                .and_then(Value::as_str)
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("user {}: profile.login is missing", u.id))?;
            if !logins.insert(login.to_lowercase()) {
                return Err(format!("login {login:?} is repeated"));
            }
            for f in &u.factors {
                if f.factor_type.is_empty() {
                    return Err(format!("user {}: a factor has no factorType", u.id));
                }
                if let Some(id) = &f.id
                    && !factor_ids.insert(id.clone())
                {
                    return Err(format!("factor id {id:?} is repeated"));
                }
                if f.factor_type == "sms" || f.factor_type == "call" {
                    let n = f
                        .profile
                        .as_ref()
                        .and_then(|p| p.get("phoneNumber"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if rules::normalize_phone(n).is_none() {
                        return Err(format!("user {}: invalid phoneNumber {n:?}", u.id));
                    }
                }
            }
            for p in &u.stored_phones {
                if p.factor_type != "sms" && p.factor_type != "call" {
                    return Err(format!("user {}: stored phones are sms or call", u.id));
                }
                if rules::normalize_phone(&p.phone_number).is_none() {
                    return Err(format!(
                        "user {}: invalid stored phone {:?}",
                        u.id, p.phone_number
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A running simulator.
pub struct Simulator {
    base_url: String,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Simulator {
    /// Binds `addr` (port 0 picks a free one) and serves on the current
    /// tokio runtime until [`Simulator::shutdown`] or the runtime ends.
    /// Dropping the handle does not stop it.
    pub async fn start(
        addr: SocketAddr,
        cfg: SimConfig,
        org: OrgData,
    ) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let base_url = format!("http://{local_addr}");
        let state = OrgState::new(&org, base_url.clone(), cfg.oie, SystemTime::now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let shared = Arc::new(Shared::new(cfg, state));
        let app = server::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(
            KillableListener(listener),
            app.into_make_service_with_connect_info::<ConnHandle>(),
        )
        .with_graceful_shutdown(async move {
            // A dropped sender is not a request to stop.
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        let task = tokio::spawn(async move { serve.await });
        Ok(Simulator {
            base_url,
            local_addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits (a few seconds at most) for
    /// open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// What `GET /__sim/state` returns.
    pub fn state_json(&self) -> Value {
        self.shared.state_json()
    }

    /// Every user, in `org.json` order.
    pub fn users(&self) -> Vec<UserSnapshot> {
        lock(&self.shared.org).snapshots()
    }

    /// One user, looked up as `getUser` would (id, login, short name).
    pub fn user(&self, id_or_login: &str) -> Option<UserSnapshot> {
        lock(&self.shared.org).user_snapshot(id_or_login)
    }

    /// The passcodes "sent" so far, oldest first.
    pub fn sent_otps(&self) -> Vec<SentOtp> {
        lock(&self.shared.org).otps()
    }

    /// The request log, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.requests()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// Turns capture on or off and sets the clock skew.
    pub fn set_settings(&self, settings: SimSettings) {
        *lock(&self.shared.settings) = settings;
    }

    /// The requests made to `/oauth2/v1/token`, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared
            .oauth
            .as_ref()
            .map(|o| o.requests())
            .unwrap_or_default()
    }

    /// The access tokens issued and not revoked (test use: the simulator
    /// guards nothing real).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .oauth
            .as_ref()
            .map(|o| o.issued())
            .unwrap_or_default()
    }

    /// Forgets every issued access token (a revocation).
    pub fn revoke_tokens(&self) {
        if let Some(o) = &self.shared.oauth {
            o.revoke_all();
        }
    }

    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }
}

/// Runs a simulator on `127.0.0.1:port` for manual runs and scripts: the
/// base URL is the first line on stdout, then it serves until Ctrl-C or
/// SIGTERM.
pub async fn run_standalone(port: u16, cfg: SimConfig, org: OrgData) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let sim = Simulator::start(addr, cfg, org)
        .await
        .with_context(|| format!("starting the Okta simulator on {addr}"))?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", sim.base_url())?;
        out.flush()?;
    }
    eprintln!(
        "Okta simulator on {0} (state: {0}/__sim/state, requests: {0}/__sim/requests); Ctrl-C to stop",
        sim.base_url()
    );
    let waited = wait_for_stop_signal().await;
    sim.shutdown().await;
    waited
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("listening for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("listening for Ctrl-C")?;
    Ok(())
}

/// Locks a mutex, carrying on after a panic elsewhere: the simulator's
/// state stays usable for the assertions that explain the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
