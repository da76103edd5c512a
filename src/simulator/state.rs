//! The simulated org: users, their factors, and the stored phone records
//! behind sms/call factors, with the enroll/delete rules of docs/okta-behaviour.md.
//!
//! Every operation takes `&mut self` and runs to completion under the
//! caller's lock, so concurrent requests see each other's effects in some
//! serial order, as they would against one Okta org.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::rules::{
    self, Compare, MAX_EXTENSION_LEN, encode_query_value, iso_time, normalize_phone, parse_expr,
    query_bool, value_matches,
};
use super::{OrgData, OrgFactor};
use crate::okta::wire::{FactorProfile, UserFactor};

const ACTIVE: &str = "ACTIVE";
const PENDING: &str = "PENDING_ACTIVATION";
const DEPROVISIONED: &str = "DEPROVISIONED";
/// `listUsers` page size when the client gives none, and its ceiling.
const DEFAULT_PAGE: usize = 200;
/// `q` lookups default to a smaller page (spec, `limit` description).
const DEFAULT_Q_PAGE: usize = 10;
/// One OTP per phone and channel per this long (F12).
const OTP_INTERVAL: Duration = Duration::from_secs(30);

/// An Okta-shaped error the server turns into a response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: String,
    pub summary: String,
    pub causes: Vec<String>,
    /// Methods for an `Allow` header on 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &str, summary: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            summary: summary.into(),
            causes: Vec::new(),
            allow: None,
        }
    }

    fn with_cause(mut self, cause: impl Into<String>) -> ApiError {
        self.causes.push(cause.into());
        self
    }

    pub(crate) fn user_not_found(key: &str) -> ApiError {
        ApiError::new(
            404,
            "E0000007",
            format!("Not found: Resource not found: {key} (User)"),
        )
    }

    fn factor_not_found(factor_id: &str) -> ApiError {
        ApiError::new(
            404,
            "E0000007",
            format!("Not found: Resource not found: {factor_id} (UserFactor)"),
        )
    }

    fn enroll_validation(cause: impl Into<String>) -> ApiError {
        ApiError::new(
            400,
            "E0000001",
            "Api validation failed: factorEnrollRequest",
        )
        .with_cause(cause)
    }

    pub(crate) fn bad_body() -> ApiError {
        ApiError::new(400, "E0000003", "The request body was not well-formed.")
    }

    pub(crate) fn method_not_allowed(allow: &'static str) -> ApiError {
        let mut e = ApiError::new(
            405,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        );
        e.allow = Some(allow);
        e
    }
}

/// A successful answer: status, optional JSON body, extra headers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn no_content() -> Reply {
        Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }
}

/// Query parameters as received, in order, `+` already read as space.
pub(crate) type Query = Vec<(String, String)>;

fn param<'q>(q: &'q Query, name: &str) -> Option<&'q str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A stored phone record, as a test or `/__sim/state` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPhone {
    pub id: String,
    /// `sms` or `call`: the records are kept per factor type.
    pub factor_type: String,
    /// `+digits`.
    pub phone_number: String,
    /// Verified phones block a different number unless `updatePhone=true`.
    pub verified: bool,
    /// Whether a factor of the same type currently carries this number.
    pub in_use: bool,
}

/// One user as a test or `/__sim/state` sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSnapshot {
    pub id: String,
    pub status: String,
    pub profile: Map<String, Value>,
    /// The factors exactly as `listFactors` would return them.
    pub factors: Vec<UserFactor>,
    pub stored_phones: Vec<StoredPhone>,
}

impl UserSnapshot {
    pub fn login(&self) -> &str {
        self.profile
            .get("login")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The user's factors of one type (`sms`, `call`, ...).
    pub fn factors_of<'a>(&'a self, factor_type: &'a str) -> impl Iterator<Item = &'a UserFactor> {
        self.factors
            .iter()
            .filter(move |f| f.factor_type == factor_type)
    }

    /// The numbers of the user's factors of one type, in factor order.
    pub fn numbers_of(&self, factor_type: &str) -> Vec<String> {
        self.factors_of(factor_type)
            .filter_map(|f| f.phone_number().map(str::to_string))
            .collect()
    }
}

/// A one-time passcode the simulator "sent".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SentOtp {
    pub user_id: String,
    pub factor_id: String,
    pub factor_type: String,
    pub phone_number: String,
    pub code: String,
    pub sent_at: String,
}

#[derive(Debug, Clone)]
struct PhoneRec {
    id: String,
    factor_type: String,
    number: String,
    verified: bool,
}

#[derive(Debug, Clone)]
struct FactorRec {
    id: String,
    factor_type: String,
    provider: String,
    status: String,
    created: String,
    last_updated: String,
    /// Kept whole so non-phone factors from `org.json` round-trip.
    profile: Map<String, Value>,
}

impl FactorRec {
    fn number(&self) -> Option<&str> {
        self.profile.get("phoneNumber").and_then(Value::as_str)
    }

    fn is_phone(&self) -> bool {
        self.factor_type == "sms" || self.factor_type == "call"
    }
}

#[derive(Debug, Clone)]
struct UserRec {
    id: String,
    status: String,
    created: String,
    last_updated: String,
    profile: Map<String, Value>,
    factors: Vec<FactorRec>,
    phones: Vec<PhoneRec>,
}

impl UserRec {
    fn login(&self) -> &str {
        self.profile
            .get("login")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn in_use(&self, p: &PhoneRec) -> bool {
        self.factors
            .iter()
            .any(|f| f.factor_type == p.factor_type && f.number() == Some(p.number.as_str()))
    }
}

/// A parsed sms/call enroll body.
struct EnrollBody {
    factor_type: String,
    number: Option<String>,
    extension: Option<String>,
}

/// Everything about the org that requests can change.
pub(crate) struct OrgState {
    base_url: String,
    oie: bool,
    users: Vec<UserRec>,
    by_id: HashMap<String, usize>,
    otps: Vec<SentOtp>,
    last_send: HashMap<(String, String), Instant>,
}

impl OrgState {
    pub(crate) fn new(
        org: &OrgData,
        base_url: String,
        oie: bool,
        now: SystemTime,
    ) -> Result<OrgState, String> {
        org.validate()?;
        let now_s = iso_time(now);
        let mut users = Vec::with_capacity(org.users.len());
        let mut by_id = HashMap::new();
        for u in &org.users {
            let created = u.created.clone().unwrap_or_else(|| now_s.clone());
            let mut rec = UserRec {
                id: u.id.clone(),
                status: u.status.clone(),
                created: created.clone(),
                last_updated: created.clone(),
                profile: u.profile.clone(),
                factors: Vec::new(),
                phones: Vec::new(),
            };
            for (i, f) in u.factors.iter().enumerate() {
                let factor = load_factor(&u.id, i, f, &created)?;
                if !oie
                    && factor.is_phone()
                    && rec
                        .factors
                        .iter()
                        .any(|g| g.factor_type == factor.factor_type)
                {
                    return Err(format!(
                        "user {}: more than one {} factor needs Identity Engine mode (oie)",
                        u.id, factor.factor_type
                    ));
                }
                if let Some(n) = factor.number().filter(|_| factor.is_phone()) {
                    rec.phones.push(PhoneRec {
                        id: rules::stable_factor_id("sms", &format!("{}#phone{i}", u.id)),
                        factor_type: factor.factor_type.clone(),
                        number: n.to_string(),
                        verified: factor.status == ACTIVE,
                    });
                }
                rec.factors.push(factor);
            }
            for (i, p) in u.stored_phones.iter().enumerate() {
                let number = normalize_phone(&p.phone_number)
                    .ok_or_else(|| format!("user {}: invalid stored phone", u.id))?;
                let dup = rec
                    .phones
                    .iter()
                    .any(|q| q.factor_type == p.factor_type && q.number == number);
                if !dup {
                    rec.phones.push(PhoneRec {
                        id: rules::stable_factor_id("sms", &format!("{}#stored{i}", u.id)),
                        factor_type: p.factor_type.clone(),
                        number,
                        verified: p.verified,
                    });
                }
            }
            by_id.insert(rec.id.clone(), users.len());
            users.push(rec);
        }
        Ok(OrgState {
            base_url,
            oie,
            users,
            by_id,
            otps: Vec::new(),
            last_send: HashMap::new(),
        })
    }

    // ----- lookups ---------------------------------------------------------

    /// `getUser`'s rule: id, then login (any case), then an unambiguous
    /// short name (the part of the login before `@`).
    pub(crate) fn find_user(&self, key: &str) -> Option<usize> {
        if let Some(&i) = self.by_id.get(key) {
            return Some(i);
        }
        let lower = key.to_lowercase();
        if let Some(i) = self
            .users
            .iter()
            .position(|u| u.login().to_lowercase() == lower)
        {
            return Some(i);
        }
        if key.is_empty() || key.contains('@') {
            return None;
        }
        let mut hits = self.users.iter().enumerate().filter(|(_, u)| {
            u.login()
                .split_once('@')
                .is_some_and(|(short, _)| short.to_lowercase() == lower)
        });
        match (hits.next(), hits.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }

    /// The user id a path segment names, for fault matching.
    pub(crate) fn resolve_user_id(&self, key: &str) -> Option<String> {
        self.find_user(key).map(|i| self.users[i].id.clone())
    }

    /// The type of a factor, for fault matching.
    pub(crate) fn factor_type_of(&self, user_id: &str, factor_id: &str) -> Option<String> {
        let u = &self.users[*self.by_id.get(user_id)?];
        u.factors
            .iter()
            .find(|f| f.id == factor_id)
            .map(|f| f.factor_type.clone())
    }

    /// Factor endpoints take an id only (docs/okta-behaviour.md, U4) and treat a
    /// deactivated user as absent (same file, User status).
    fn factor_user(&self, user_id: &str) -> Result<usize, ApiError> {
        match self.by_id.get(user_id) {
            Some(&i) if self.users[i].status != DEPROVISIONED => Ok(i),
            _ => Err(ApiError::user_not_found(user_id)),
        }
    }

    // ----- users -----------------------------------------------------------

    pub(crate) fn get_user(&self, key: &str) -> Result<Reply, ApiError> {
        let i = self
            .find_user(key)
            .ok_or_else(|| ApiError::user_not_found(key))?;
        Ok(Reply::ok(self.user_json(&self.users[i])))
    }

    pub(crate) fn update_user(
        &mut self,
        key: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Reply, ApiError> {
        let i = self
            .find_user(key)
            .filter(|&i| self.users[i].status != DEPROVISIONED)
            .ok_or_else(|| ApiError::user_not_found(key))?;
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
            return Err(ApiError::bad_body());
        };
        let patch = match body.get("profile") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(ApiError::bad_body()),
        };
        if let Some(login) = patch.get("login") {
            let Some(login) = login.as_str().filter(|l| !l.is_empty()) else {
                return Err(
                    ApiError::new(400, "E0000001", "Api validation failed: login")
                        .with_cause("login: The field cannot be left blank"),
                );
            };
            let taken = self
                .users
                .iter()
                .enumerate()
                .any(|(j, u)| j != i && u.login().eq_ignore_ascii_case(login));
            if taken {
                return Err(ApiError::new(400, "E0000001", "Api validation failed: login")
                    .with_cause("login: An object with this field already exists in the current organization"));
            }
        }
        let u = &mut self.users[i];
        for (k, v) in patch {
            u.profile.insert(k, v);
        }
        u.last_updated = iso_time(now);
        Ok(Reply::ok(self.user_json(&self.users[i])))
    }

    pub(crate) fn list_users(&self, q: &Query) -> Result<Reply, ApiError> {
        let search = param(q, "search").filter(|s| !s.trim().is_empty());
        let filter = param(q, "filter").filter(|s| !s.trim().is_empty());
        let prefix = param(q, "q").filter(|s| !s.is_empty());
        let default_page = if prefix.is_some() {
            DEFAULT_Q_PAGE
        } else {
            DEFAULT_PAGE
        };
        let limit = param(q, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > 0)
            .map_or(default_page, |l| l.min(DEFAULT_PAGE));

        let matching: Vec<&UserRec> = if let Some(expr) = search.or(filter) {
            let is_filter = search.is_none();
            let parsed = parse_expr(expr, is_filter).map_err(|cause| {
                ApiError::new(400, "E0000031", "Invalid search criteria.").with_cause(cause)
            })?;
            let cmp = if is_filter {
                Compare::Exact
            } else {
                Compare::IgnoreCase
            };
            self.users
                .iter()
                .filter(|u| {
                    let mut hits = parsed.clauses.iter().map(|c| {
                        attr_value(u, &c.attr).is_some_and(|v| value_matches(&v, &c.value, cmp))
                    });
                    if parsed.all {
                        hits.all(|h| h)
                    } else {
                        hits.any(|h| h)
                    }
                })
                .collect()
        } else if let Some(p) = prefix {
            let p = p.to_lowercase();
            self.users
                .iter()
                .filter(|u| u.status != DEPROVISIONED)
                .filter(|u| {
                    ["firstName", "lastName", "email"].iter().any(|k| {
                        u.profile
                            .get(*k)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.to_lowercase().starts_with(&p))
                    })
                })
                .collect()
        } else {
            // Without a query, Okta leaves deactivated users out (spec note).
            self.users
                .iter()
                .filter(|u| u.status != DEPROVISIONED)
                .collect()
        };

        let start = match param(q, "after") {
            Some(after) => matching
                .iter()
                .position(|u| u.id == after)
                .map_or(matching.len(), |p| p + 1),
            None => 0,
        };
        let page: Vec<&UserRec> = matching.iter().skip(start).take(limit).copied().collect();
        let more = start + page.len() < matching.len();
        let body = Value::Array(page.iter().map(|u| self.user_json(u)).collect());
        let mut reply = Reply::ok(body);
        // `q` is documented as unpaginated, so only the others get links.
        if prefix.is_none() || search.is_some() || filter.is_some() {
            let keep: Vec<(&str, &str)> = q
                .iter()
                .filter(|(k, _)| k != "after" && k != "limit")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let link = |after: Option<&str>| {
                let mut s = format!("{}/api/v1/users?limit={limit}", self.base_url);
                if let Some(a) = after {
                    s.push_str(&format!("&after={}", encode_query_value(a)));
                }
                for (k, v) in &keep {
                    s.push_str(&format!(
                        "&{}={}",
                        encode_query_value(k),
                        encode_query_value(v)
                    ));
                }
                s
            };
            let mut header = format!("<{}>; rel=\"self\"", link(param(q, "after")));
            if let (true, Some(last)) = (more, page.last()) {
                header.push_str(&format!(", <{}>; rel=\"next\"", link(Some(&last.id))));
            }
            reply.headers.push(("link", header));
        }
        Ok(reply)
    }

    // ----- factors ---------------------------------------------------------

    pub(crate) fn list_factors(&self, user_id: &str) -> Result<Reply, ApiError> {
        let u = &self.users[self.factor_user(user_id)?];
        Ok(Reply::ok(Value::Array(
            u.factors.iter().map(|f| self.factor_json(u, f)).collect(),
        )))
    }

    pub(crate) fn get_factor(&self, user_id: &str, factor_id: &str) -> Result<Reply, ApiError> {
        let u = &self.users[self.factor_user(user_id)?];
        let f = u
            .factors
            .iter()
            .find(|f| f.id == factor_id)
            .ok_or_else(|| ApiError::factor_not_found(factor_id))?;
        Ok(Reply::ok(self.factor_json(u, f)))
    }

    pub(crate) fn delete_factor(
        &mut self,
        user_id: &str,
        factor_id: &str,
        q: &Query,
    ) -> Result<Reply, ApiError> {
        let ui = self.factor_user(user_id)?;
        let u = &mut self.users[ui];
        let fi = u
            .factors
            .iter()
            .position(|f| f.id == factor_id)
            .ok_or_else(|| ApiError::factor_not_found(factor_id))?;
        let f = u.factors.remove(fi);
        // Without the flag the number stays behind as a (verified) recovery
        // phone: the state F3 and F5 depend on.
        if f.is_phone() && query_bool(param(q, "removeRecoveryEnrollment")) {
            let number = f.number().map(str::to_string);
            u.phones.retain(|p| {
                !(p.factor_type == f.factor_type && Some(&p.number) == number.as_ref())
            });
        }
        Ok(Reply::no_content())
    }

    /// `enrollFactor` for sms and call: rules F1–F12 of docs/okta-behaviour.md.
    pub(crate) fn enroll(
        &mut self,
        user_id: &str,
        q: &Query,
        body: &[u8],
        now: SystemTime,
        mono: Instant,
    ) -> Result<Reply, ApiError> {
        let ui = self.factor_user(user_id)?;
        let update_phone = query_bool(param(q, "updatePhone"));
        let activate = query_bool(param(q, "activate"));
        if let Some(v) = param(q, "tokenLifetimeSeconds")
            && !v.parse::<i64>().is_ok_and(|n| (1..=86_400).contains(&n))
        {
            return Err(ApiError::new(
                400,
                "E0000001",
                "Api validation failed: tokenLifetimeSeconds",
            )
            .with_cause("tokenLifetimeSeconds: must be between 1 and 86400"));
        }
        let req = parse_enroll_body(body)?;
        let t = req.factor_type.as_str();
        let now_s = iso_time(now);

        let existing = {
            let u = &self.users[ui];
            let same_type: Vec<usize> = (0..u.factors.len())
                .filter(|&i| u.factors[i].factor_type == t)
                .collect();
            let has_orphan = u.phones.iter().any(|p| p.factor_type == t && !u.in_use(p));
            if !self.oie {
                same_type.first().copied()
            } else {
                match &req.number {
                    Some(n) => same_type
                        .iter()
                        .copied()
                        .find(|&i| u.factors[i].number() == Some(n.as_str())),
                    None if has_orphan => None,
                    None => same_type.first().copied(),
                }
            }
        };

        if let Some(fi) = existing {
            return self.enroll_over_existing(ui, fi, &req, update_phone, activate, now, mono);
        }

        let u = &self.users[ui];
        let orphans: Vec<&PhoneRec> = u
            .phones
            .iter()
            .filter(|p| p.factor_type == t && !u.in_use(p))
            .collect();
        let verified: Vec<&PhoneRec> = orphans.iter().copied().filter(|p| p.verified).collect();
        let target = match &req.number {
            Some(n) => n.clone(),
            // Omitting the number re-enrolls the stored one (F5).
            None => match verified.first().or(orphans.first()) {
                Some(p) => p.number.clone(),
                None => {
                    return Err(ApiError::enroll_validation(
                        "profile.phoneNumber: The field cannot be left blank",
                    ));
                }
            },
        };

        if verified.iter().any(|p| p.number == target) {
            // F5: the phone is already verified, so no OTP and no pending step.
            let id = rules::new_factor_id(t);
            let f = new_factor(&id, &req, &target, ACTIVE, &now_s);
            let u = &mut self.users[ui];
            u.factors.push(f);
            return Ok(self.factor_reply(ui, &id));
        }
        if !verified.is_empty() && !update_phone {
            return Err(ApiError::enroll_validation(
                "There is an existing verified phone number.",
            ));
        }
        // F4 / F6: the new number replaces what is left of the old one.
        if !activate {
            self.check_send(t, &target, mono)?;
        }
        let id = rules::new_factor_id(t);
        let status = if activate { ACTIVE } else { PENDING };
        let f = new_factor(&id, &req, &target, status, &now_s);
        let u = &mut self.users[ui];
        let stale: Vec<String> = u
            .phones
            .iter()
            .filter(|p| p.factor_type == t && !u.in_use(p))
            .map(|p| p.id.clone())
            .collect();
        u.phones.retain(|p| !stale.contains(&p.id));
        u.phones.push(PhoneRec {
            id: rules::new_factor_id("sms"),
            factor_type: t.to_string(),
            number: target.clone(),
            verified: activate,
        });
        u.factors.push(f);
        if !activate {
            self.send_otp(ui, &id, t, &target, now, mono);
        }
        Ok(self.factor_reply(ui, &id))
    }

    /// F1, F2 and F2b: a factor of the requested type (and, in OIE mode,
    /// the same number) is already enrolled.
    #[allow(clippy::too_many_arguments)]
    fn enroll_over_existing(
        &mut self,
        ui: usize,
        fi: usize,
        req: &EnrollBody,
        update_phone: bool,
        activate: bool,
        now: SystemTime,
        mono: Instant,
    ) -> Result<Reply, ApiError> {
        let f = &self.users[ui].factors[fi];
        if f.status == ACTIVE {
            return Err(ApiError::enroll_validation(
                "A factor of this type is already set up.",
            ));
        }
        let old = f.number().unwrap_or_default().to_string();
        let target = req.number.clone().unwrap_or_else(|| old.clone());
        if target != old && !update_phone {
            return Err(ApiError::enroll_validation(
                "A factor of this type is already set up.",
            ));
        }
        let t = f.factor_type.clone();
        let factor_id = f.id.clone();
        if !activate {
            self.check_send(&t, &target, mono)?;
        }
        let u = &mut self.users[ui];
        let f = &mut u.factors[fi];
        f.profile
            .insert("phoneNumber".into(), Value::String(target.clone()));
        if t == "call"
            && let Some(ext) = &req.extension
        {
            f.profile
                .insert("phoneExtension".into(), Value::String(ext.clone()));
        }
        f.last_updated = iso_time(now);
        if activate {
            f.status = ACTIVE.into();
        }
        match u
            .phones
            .iter_mut()
            .find(|p| p.factor_type == t && p.number == old)
        {
            Some(p) => {
                p.number = target.clone();
                p.verified = activate;
            }
            None => u.phones.push(PhoneRec {
                id: rules::new_factor_id("sms"),
                factor_type: t.clone(),
                number: target.clone(),
                verified: activate,
            }),
        }
        if !activate {
            self.send_otp(ui, &factor_id, &t, &target, now, mono);
        }
        Ok(self.factor_reply(ui, &factor_id))
    }

    pub(crate) fn activate(
        &mut self,
        user_id: &str,
        factor_id: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Reply, ApiError> {
        let ui = self.factor_user(user_id)?;
        let u = &self.users[ui];
        let fi = u
            .factors
            .iter()
            .position(|f| f.id == factor_id)
            .ok_or_else(|| ApiError::factor_not_found(factor_id))?;
        if u.factors[fi].status != PENDING {
            return Err(
                ApiError::new(400, "E0000001", "Api validation failed: factor")
                    .with_cause("The factor is not pending activation."),
            );
        }
        let pass = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get("passCode")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let expected = self
            .otps
            .iter()
            .rev()
            .find(|o| o.factor_id == factor_id)
            .map(|o| o.code.clone());
        if pass.is_none() || pass != expected {
            return Err(ApiError::new(403, "E0000068", "Invalid Passcode/Answer"));
        }
        let u = &mut self.users[ui];
        let f = &mut u.factors[fi];
        f.status = ACTIVE.into();
        f.last_updated = iso_time(now);
        let (t, n) = (f.factor_type.clone(), f.number().map(str::to_string));
        for p in u.phones.iter_mut() {
            if p.factor_type == t && Some(&p.number) == n.as_ref() {
                p.verified = true;
            }
        }
        Ok(self.factor_reply(ui, factor_id))
    }

    pub(crate) fn resend(
        &mut self,
        user_id: &str,
        factor_id: &str,
        now: SystemTime,
        mono: Instant,
    ) -> Result<Reply, ApiError> {
        let ui = self.factor_user(user_id)?;
        let f = self.users[ui]
            .factors
            .iter()
            .find(|f| f.id == factor_id)
            .ok_or_else(|| ApiError::factor_not_found(factor_id))?;
        if f.status != PENDING || !f.is_phone() {
            return Err(
                ApiError::new(400, "E0000001", "Api validation failed: factor")
                    .with_cause("The factor is not pending activation."),
            );
        }
        let (t, n) = (
            f.factor_type.clone(),
            f.number().unwrap_or_default().to_string(),
        );
        self.check_send(&t, &n, mono)?;
        self.send_otp(ui, factor_id, &t, &n, now, mono);
        Ok(self.factor_reply(ui, factor_id))
    }

    pub(crate) fn catalog(&self, user_id: &str) -> Result<Reply, ApiError> {
        let u = &self.users[self.factor_user(user_id)?];
        let enroll_href = format!("{}/api/v1/users/{}/factors", self.base_url, u.id);
        let entries: Vec<Value> = ["sms", "call"]
            .iter()
            .map(|t| {
                let status = if u
                    .factors
                    .iter()
                    .any(|f| f.factor_type == *t && f.status == ACTIVE)
                {
                    ACTIVE
                } else if u.factors.iter().any(|f| f.factor_type == *t) {
                    PENDING
                } else {
                    "NOT_SETUP"
                };
                let mut e = json!({
                    "factorType": t,
                    "provider": "OKTA",
                    "vendorName": "OKTA",
                    "enrollment": "OPTIONAL",
                    "status": status,
                    "_links": {"enroll": {"href": enroll_href, "hints": {"allow": ["POST"]}}},
                });
                let phones: Vec<Value> = u
                    .phones
                    .iter()
                    .filter(|p| p.factor_type == *t && !u.in_use(p))
                    .map(|p| {
                        json!({
                            "id": p.id,
                            "profile": {"phoneNumber": p.number},
                            "status": if p.verified { ACTIVE } else { PENDING },
                        })
                    })
                    .collect();
                if !phones.is_empty() {
                    e["_embedded"] = json!({ "phones": phones });
                }
                e
            })
            .collect();
        Ok(Reply::ok(Value::Array(entries)))
    }

    // ----- OTPs ------------------------------------------------------------

    /// F12: one OTP per phone and channel per interval.
    fn check_send(&self, factor_type: &str, number: &str, mono: Instant) -> Result<(), ApiError> {
        let key = (factor_type.to_string(), number.to_string());
        match self.last_send.get(&key) {
            Some(&at) if mono.saturating_duration_since(at) < OTP_INTERVAL => {
                Err(if factor_type == "call" {
                    ApiError::new(
                        429,
                        "E0000133",
                        "A phone call was recently made. Please wait 30 seconds before trying again.",
                    )
                } else {
                    ApiError::new(
                        429,
                        "E0000109",
                        "An SMS message was recently sent. Please wait 30 seconds before trying again.",
                    )
                })
            }
            _ => Ok(()),
        }
    }

    fn send_otp(
        &mut self,
        ui: usize,
        factor_id: &str,
        factor_type: &str,
        number: &str,
        now: SystemTime,
        mono: Instant,
    ) {
        self.last_send
            .insert((factor_type.to_string(), number.to_string()), mono);
        self.otps.push(SentOtp {
            user_id: self.users[ui].id.clone(),
            factor_id: factor_id.to_string(),
            factor_type: factor_type.to_string(),
            phone_number: number.to_string(),
            code: rules::new_otp(),
            sent_at: iso_time(now),
        });
    }

    pub(crate) fn otps(&self) -> Vec<SentOtp> {
        self.otps.clone()
    }

    // ----- JSON shapes -----------------------------------------------------

    fn factor_reply(&self, ui: usize, factor_id: &str) -> Reply {
        let u = &self.users[ui];
        match u.factors.iter().find(|f| f.id == factor_id) {
            Some(f) => Reply::ok(self.factor_json(u, f)),
            None => Reply::ok(Value::Null),
        }
    }

    fn user_json(&self, u: &UserRec) -> Value {
        let activated = if u.status == "STAGED" || u.status == "PROVISIONED" {
            Value::Null
        } else {
            Value::String(u.created.clone())
        };
        json!({
            "id": u.id,
            "status": u.status,
            "created": u.created,
            "activated": activated,
            "statusChanged": u.created,
            "lastLogin": null,
            "lastUpdated": u.last_updated,
            "passwordChanged": null,
            "type": {"id": "oty1simulatorDEFAULT"},
            "profile": u.profile,
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": format!("{}/api/v1/users/{}", self.base_url, u.id)}},
        })
    }

    fn factor_wire(&self, u: &UserRec, f: &FactorRec) -> UserFactor {
        let user_href = format!("{}/api/v1/users/{}", self.base_url, u.id);
        let self_href = format!("{user_href}/factors/{}", f.id);
        let link =
            |href: String, methods: &[&str]| json!({"href": href, "hints": {"allow": methods}});
        // F8: the link set depends on status.
        let links = if f.status == PENDING && f.is_phone() {
            json!({
                "activate": link(format!("{self_href}/lifecycle/activate"), &["POST"]),
                "resend": [{
                    "name": f.factor_type,
                    "href": format!("{self_href}/resend"),
                    "hints": {"allow": ["POST"]},
                }],
                "self": link(self_href.clone(), &["GET"]),
                "user": link(user_href, &["GET"]),
            })
        } else if f.status == ACTIVE && f.is_phone() {
            json!({
                "verify": link(format!("{self_href}/verify"), &["POST"]),
                "self": link(self_href.clone(), &["GET", "DELETE"]),
                "user": link(user_href, &["GET"]),
            })
        } else {
            json!({
                "self": link(self_href.clone(), &["GET", "DELETE"]),
                "user": link(user_href, &["GET"]),
            })
        };
        let profile = f.is_phone().then(|| FactorProfile {
            phone_number: f.number().map(str::to_string),
            phone_extension: f
                .profile
                .get("phoneExtension")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
        UserFactor {
            id: f.id.clone(),
            factor_type: f.factor_type.clone(),
            provider: f.provider.clone(),
            status: f.status.clone(),
            profile,
            vendor_name: Some(f.provider.clone()),
            created: Some(f.created.clone()),
            last_updated: Some(f.last_updated.clone()),
            links: Some(links),
        }
    }

    fn factor_json(&self, u: &UserRec, f: &FactorRec) -> Value {
        let mut v = serde_json::to_value(self.factor_wire(u, f)).unwrap_or(Value::Null);
        if !f.is_phone() {
            v["profile"] = Value::Object(f.profile.clone());
        }
        v
    }

    fn snapshot(&self, u: &UserRec) -> UserSnapshot {
        UserSnapshot {
            id: u.id.clone(),
            status: u.status.clone(),
            profile: u.profile.clone(),
            factors: u.factors.iter().map(|f| self.factor_wire(u, f)).collect(),
            stored_phones: u
                .phones
                .iter()
                .map(|p| StoredPhone {
                    id: p.id.clone(),
                    factor_type: p.factor_type.clone(),
                    phone_number: p.number.clone(),
                    verified: p.verified,
                    in_use: u.in_use(p),
                })
                .collect(),
        }
    }

    pub(crate) fn snapshots(&self) -> Vec<UserSnapshot> {
        self.users.iter().map(|u| self.snapshot(u)).collect()
    }

    pub(crate) fn user_snapshot(&self, key: &str) -> Option<UserSnapshot> {
        self.find_user(key).map(|i| self.snapshot(&self.users[i]))
    }
}

fn new_factor(id: &str, req: &EnrollBody, number: &str, status: &str, now_s: &str) -> FactorRec {
    let mut profile = Map::new();
    profile.insert("phoneNumber".into(), Value::String(number.to_string()));
    if req.factor_type == "call"
        && let Some(ext) = &req.extension
    {
        profile.insert("phoneExtension".into(), Value::String(ext.clone()));
    }
    FactorRec {
        id: id.to_string(),
        factor_type: req.factor_type.clone(),
        provider: "OKTA".into(),
        status: status.to_string(),
        created: now_s.to_string(),
        last_updated: now_s.to_string(),
        profile,
    }
}

fn load_factor(user_id: &str, i: usize, f: &OrgFactor, created: &str) -> Result<FactorRec, String> {
    let mut profile = match &f.profile {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(format!("user {user_id}: factor profile must be an object")),
    };
    let is_phone = f.factor_type == "sms" || f.factor_type == "call";
    if is_phone {
        let raw = profile
            .get("phoneNumber")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!(
                    "user {user_id}: {} factor without phoneNumber",
                    f.factor_type
                )
            })?;
        let n = normalize_phone(raw)
            .ok_or_else(|| format!("user {user_id}: invalid phoneNumber {raw:?}"))?;
        profile.insert("phoneNumber".into(), Value::String(n));
    }
    Ok(FactorRec {
        id: f
            .id
            .clone()
            .unwrap_or_else(|| rules::stable_factor_id(&f.factor_type, &format!("{user_id}#{i}"))),
        factor_type: f.factor_type.clone(),
        provider: f.provider.clone(),
        status: f.status.clone(),
        created: created.to_string(),
        last_updated: created.to_string(),
        profile,
    })
}

fn parse_enroll_body(body: &[u8]) -> Result<EnrollBody, ApiError> {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::bad_body());
    };
    let factor_type = match v.get("factorType") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::enroll_validation(
                "factorType: The field cannot be left blank",
            ));
        }
    };
    if factor_type != "sms" && factor_type != "call" {
        return Err(ApiError::enroll_validation(format!(
            "factorType: {factor_type:?} is not supported here (the simulator enrolls sms and call only)"
        )));
    }
    match v.get("provider").and_then(Value::as_str) {
        Some("OKTA") => {}
        Some(p) => {
            return Err(ApiError::enroll_validation(format!(
                "provider: {p:?} does not support {factor_type}"
            )));
        }
        None => {
            return Err(ApiError::enroll_validation(
                "provider: The field cannot be left blank",
            ));
        }
    }
    let profile = match v.get("profile") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(ApiError::bad_body()),
    };
    // An empty or non-string number is treated as unparseable rather than
    // as "no number", so a client bug cannot silently re-enroll the old one.
    let number = match profile.get("phoneNumber") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(normalize_phone(s).ok_or_else(invalid_phone)?),
        Some(_) => return Err(invalid_phone()),
    };
    let extension = match profile.get("phoneExtension") {
        Some(Value::String(s)) if factor_type == "call" => {
            if s.chars().count() > MAX_EXTENSION_LEN {
                return Err(
                    ApiError::new(400, "E0000121", "Invalid phone extension.").with_cause(format!(
                        "phoneExtension: must be at most {MAX_EXTENSION_LEN} characters"
                    )),
                );
            }
            Some(s.clone())
        }
        _ => None,
    };
    Ok(EnrollBody {
        factor_type,
        number,
        extension,
    })
}

fn invalid_phone() -> ApiError {
    ApiError::new(400, "E0000098", "This phone number is invalid.")
}

/// A user attribute as a string, for `search`/`filter` clauses.
fn attr_value(u: &UserRec, attr: &str) -> Option<String> {
    match attr {
        "id" => Some(u.id.clone()),
        "status" => Some(u.status.clone()),
        "lastUpdated" => Some(u.last_updated.clone()),
        _ => {
            let key = attr.strip_prefix("profile.")?;
            match u.profile.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        }
    }
}
