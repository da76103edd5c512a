//! Scripted misbehaviour: rules that make chosen requests fail, stall, or
//! succeed without the client hearing about it, so tests can reach the
//! updater's error paths (unknown outcomes, 5xx, odd 429s) on demand.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lock;
use super::rules::digits;

/// One fault rule: which requests it hits and what happens to them.
///
/// Rules are tried in the order they were added; the first one that
/// matches and still has uses left decides the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    #[serde(default, rename = "match")]
    pub matcher: FaultMatch,
    pub action: FaultAction,
    /// How many requests it affects; `None` means every matching one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// Matching requests to let through untouched before it starts.
    #[serde(default)]
    pub skip: u32,
}

/// Which requests a fault applies to. Every field that is set must match;
/// an empty matcher matches every `/api/v1` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultMatch {
    /// HTTP method, any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Okta operationId: `getUser`, `listUsers`, `updateUser`, `listFactors`,
    /// `enrollFactor`, `getFactor`, `unenrollFactor`, `listSupportedFactors`,
    /// `activateFactor`, `resendEnrollFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Substring of the path, raw (as sent) or percent-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// The user's id; a login in a `getUser` path is resolved first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The enroll body's `profile.phoneNumber`, compared by digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The enroll body's `factorType`, or the type of the factor in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor_type: Option<String>,
}

/// What a fault does to a request it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum FaultAction {
    /// Answer with this Okta error instead of doing anything.
    Respond {
        status: u16,
        error_code: String,
        error_summary: String,
        #[serde(default)]
        error_causes: Vec<String>,
    },
    /// Wait, still counted in flight, then handle the request normally.
    Delay { ms: u64 },
    /// Apply the request's real effect, then answer with an error (by
    /// default `E0000009` "Internal Server Error"): an unknown outcome.
    PerformThenFail {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_summary: Option<String>,
    },
    /// Apply the real effect, then close the connection without answering.
    PerformThenDrop,
    /// Close the connection without doing anything.
    Drop,
    /// A 429 `E0000047` with these headers; `Reset` is the response's
    /// `Date` plus `resetInSecs`.
    RateLimited { limit: u32, reset_in_secs: u64 },
}

impl FaultAction {
    fn name(&self) -> &'static str {
        match self {
            FaultAction::Respond { .. } => "respond",
            FaultAction::Delay { .. } => "delay",
            FaultAction::PerformThenFail { .. } => "performThenFail",
            FaultAction::PerformThenDrop => "performThenDrop",
            FaultAction::Drop => "drop",
            FaultAction::RateLimited { .. } => "rateLimited",
        }
    }
}

impl Fault {
    /// A rule that hits every request, every time; narrow it with the
    /// builder methods.
    pub fn new(action: FaultAction) -> Fault {
        Fault {
            matcher: FaultMatch::default(),
            action,
            times: None,
            skip: 0,
        }
    }

    /// Shorthand for [`FaultAction::Respond`].
    pub fn respond(status: u16, error_code: &str, error_summary: &str) -> Fault {
        Fault::new(FaultAction::Respond {
            status,
            error_code: error_code.to_string(),
            error_summary: error_summary.to_string(),
            error_causes: Vec::new(),
        })
    }

    pub fn method(mut self, m: &str) -> Fault {
        self.matcher.method = Some(m.to_string());
        self
    }

    pub fn op(mut self, op: &str) -> Fault {
        self.matcher.op = Some(op.to_string());
        self
    }

    pub fn path_contains(mut self, s: &str) -> Fault {
        self.matcher.path_contains = Some(s.to_string());
        self
    }

    pub fn user(mut self, user_id: &str) -> Fault {
        self.matcher.user_id = Some(user_id.to_string());
        self
    }

    pub fn phone(mut self, number: &str) -> Fault {
        self.matcher.phone = Some(number.to_string());
        self
    }

    pub fn factor_type(mut self, t: &str) -> Fault {
        self.matcher.factor_type = Some(t.to_string());
        self
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    pub fn skip(mut self, n: u32) -> Fault {
        self.skip = n;
        self
    }
}

/// What is known about a request when faults are consulted.
#[derive(Debug, Default)]
pub(crate) struct FaultCtx<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub decoded_path: &'a str,
    pub op: &'a str,
    pub user_id: Option<String>,
    pub phone: Option<String>,
    pub factor_type: Option<String>,
}

impl FaultMatch {
    fn matches(&self, c: &FaultCtx<'_>) -> bool {
        let opt_eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(c.method))
            && self
                .op
                .as_ref()
                .is_none_or(|o| o.eq_ignore_ascii_case(c.op))
            && self.path_contains.as_ref().is_none_or(|p| {
                c.raw_path.contains(p.as_str()) || c.decoded_path.contains(p.as_str())
            })
            && opt_eq(&self.user_id, &c.user_id)
            && opt_eq(&self.factor_type, &c.factor_type)
            && self.phone.as_ref().is_none_or(|want| {
                c.phone
                    .as_ref()
                    .is_some_and(|have| digits(have) == digits(want) && !digits(want).is_empty())
            })
    }
}

/// A rule with its usage counters, as `GET /__sim/faults` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FaultEntry {
    pub index: usize,
    #[serde(flatten)]
    pub fault: Fault,
    pub hits: u32,
    pub skipped: u32,
}

#[derive(Default)]
pub(crate) struct FaultBook {
    entries: Mutex<Vec<FaultEntry>>,
}

impl FaultBook {
    pub(crate) fn add(&self, fault: Fault) {
        let mut e = lock(&self.entries);
        let index = e.len();
        e.push(FaultEntry {
            index,
            fault,
            hits: 0,
            skipped: 0,
        });
    }

    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
    }

    pub(crate) fn list(&self) -> Vec<FaultEntry> {
        lock(&self.entries).clone()
    }

    /// Whether any rule is set, so requests skip the lookups otherwise.
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.entries).is_empty()
    }

    /// The action for this request, with a label for the request log, and
    /// the rule's use counted.
    pub(crate) fn take(&self, ctx: &FaultCtx<'_>) -> Option<(FaultAction, String)> {
        let mut entries = lock(&self.entries);
        for e in entries.iter_mut() {
            if e.fault.times.is_some_and(|t| e.hits >= t) || !e.fault.matcher.matches(ctx) {
                continue;
            }
            if e.skipped < e.fault.skip {
                e.skipped += 1;
                continue;
            }
            e.hits += 1;
            let label = format!("#{} {}", e.index, e.fault.action.name());
            return Some((e.fault.action.clone(), label));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(op: &'a str, phone: Option<&str>) -> FaultCtx<'a> {
        FaultCtx {
            method: "POST",
            raw_path: "/api/v1/users/00u1/factors",
            decoded_path: "/api/v1/users/00u1/factors",
            op,
            user_id: Some("00u1".into()),
            phone: phone.map(str::to_string),
            factor_type: Some("sms".into()),
        }
    }

    #[test]
    fn times_and_skip_bound_a_rule() {
        let book = FaultBook::default();
        book.add(
            Fault::new(FaultAction::Drop)
                .op("enrollFactor")
                .times(1)
                .skip(1),
        );
        assert!(book.take(&ctx("enrollFactor", None)).is_none());
        assert!(book.take(&ctx("enrollFactor", None)).is_some());
        assert!(book.take(&ctx("enrollFactor", None)).is_none());
        assert!(book.take(&ctx("listFactors", None)).is_none());
    }

    #[test]
    fn phone_matches_by_digits() {
        let book = FaultBook::default();
        book.add(Fault::new(FaultAction::Delay { ms: 1 }).phone("+1 213-555-0101"));
        assert!(
            book.take(&ctx("enrollFactor", Some("+12135550102")))
                .is_none()
        );
        assert!(book.take(&ctx("enrollFactor", None)).is_none());
        assert!(
            book.take(&ctx("enrollFactor", Some("+12135550101")))
                .is_some()
        );
    }

    #[test]
    fn json_form_round_trips() {
        let text = r#"{"match":{"op":"enrollFactor","userId":"00u1"},
            "action":{"performThenFail":{"status":500}},"times":2}"#;
        let f: Fault = serde_json::from_str(text).unwrap();
        assert_eq!(f.times, Some(2));
        assert!(matches!(
            f.action,
            FaultAction::PerformThenFail { status: 500, .. }
        ));
        let f: Fault = serde_json::from_str(r#"{"action":"performThenDrop"}"#).unwrap();
        assert_eq!(f.action, FaultAction::PerformThenDrop);
        let f: Fault =
            serde_json::from_str(r#"{"action":{"rateLimited":{"limit":600,"resetInSecs":3}}}"#)
                .unwrap();
        assert_eq!(
            f.action,
            FaultAction::RateLimited {
                limit: 600,
                reset_in_secs: 3
            }
        );
        assert!(serde_json::from_str::<Fault>(r#"{"action":"drop","tims":1}"#).is_err());
    }
}
