//! What became of a row: the named outcomes, their exit codes, and the
//! details the report carries.
//!
//! A row's failure is data, not an exception: every path through the tool
//! ends in a [`RowResult`], and the run's exit code is computed from all of
//! them at the end.

use std::fmt;

use serde::Serialize;

/// The fate of one input row. The names are part of the tool's contract:
/// reports, summaries and scripts depend on them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Updated,
    Enrolled,
    Unchanged,
    NoFactor,
    Duplicate,
    NotSelected,
    WouldUpdate,
    WouldEnroll,
    Invalid,
    Conflict,
    ChangedSince,
    UserNotFound,
    Failed,
    FailedRestored,
    FailedUnrestored,
    NotAttempted,
}

impl Outcome {
    pub const ALL: [Outcome; 16] = [
        Outcome::Updated,
        Outcome::Enrolled,
        Outcome::Unchanged,
        Outcome::NoFactor,
        Outcome::Duplicate,
        Outcome::NotSelected,
        Outcome::WouldUpdate,
        Outcome::WouldEnroll,
        Outcome::Invalid,
        Outcome::Conflict,
        Outcome::ChangedSince,
        Outcome::UserNotFound,
        Outcome::Failed,
        Outcome::FailedRestored,
        Outcome::FailedUnrestored,
        Outcome::NotAttempted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Updated => "updated",
            Outcome::Enrolled => "enrolled",
            Outcome::Unchanged => "unchanged",
            Outcome::NoFactor => "no_factor",
            Outcome::Duplicate => "duplicate",
            Outcome::NotSelected => "not_selected",
            Outcome::WouldUpdate => "would_update",
            Outcome::WouldEnroll => "would_enroll",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
            Outcome::ChangedSince => "changed_since",
            Outcome::UserNotFound => "user_not_found",
            Outcome::Failed => "failed",
            Outcome::FailedRestored => "failed_restored",
            Outcome::FailedUnrestored => "failed_unrestored",
            Outcome::NotAttempted => "not_attempted",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The exit code this outcome asks for on its own.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Updated
            | Outcome::Enrolled
            | Outcome::Unchanged
            | Outcome::NoFactor
            | Outcome::Duplicate
            | Outcome::NotSelected
            | Outcome::WouldUpdate
            | Outcome::WouldEnroll => 0,
            Outcome::Invalid
            | Outcome::Conflict
            | Outcome::ChangedSince
            | Outcome::UserNotFound
            | Outcome::Failed
            | Outcome::FailedRestored => 1,
            Outcome::FailedUnrestored => 3,
            Outcome::NotAttempted => 4,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Combines per-row exit codes: 3 beats 4 beats 1 beats 0.
pub fn combine_exit(a: u8, b: u8) -> u8 {
    fn rank(code: u8) -> u8 {
        match code {
            3 => 3,
            4 => 2,
            0 => 0,
            _ => 1,
        }
    }
    if rank(b) > rank(a) { b } else { a }
}

/// The Okta side of a failure, kept verbatim for support tickets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OktaErrorInfo {
    pub http_status: Option<u16>,
    pub error_code: String,
    pub error_summary: String,
    pub error_causes: Vec<String>,
    pub request_id: String,
}

/// Everything the report says about one row (the journal keeps it whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RowResult {
    pub row: u64,
    pub user: String,
    pub user_id: String,
    pub login: String,
    pub user_status: String,
    pub factor_type: String,
    pub old_phone: String,
    pub new_phone: String,
    pub outcome: Outcome,
    pub detail: String,
    pub old_factor_id: String,
    pub new_factor_id: String,
    pub new_factor_status: String,
    pub attempts: u32,
    pub error: OktaErrorInfo,
    pub elapsed_ms: u64,
    /// The row journaled an intent (it deleted, or was about to delete, a
    /// factor): its end goes in the journal too.
    #[serde(default)]
    pub intent: bool,
}

impl RowResult {
    /// A result with only the row's identity filled in.
    pub fn new(row: u64, user: &str, factor_type: &str, outcome: Outcome) -> Self {
        RowResult {
            row,
            user: user.to_string(),
            user_id: String::new(),
            login: String::new(),
            user_status: String::new(),
            factor_type: factor_type.to_string(),
            old_phone: String::new(),
            new_phone: String::new(),
            outcome,
            detail: String::new(),
            old_factor_id: String::new(),
            new_factor_id: String::new(),
            new_factor_status: String::new(),
            attempts: 0,
            error: OktaErrorInfo::default(),
            elapsed_ms: 0,
            intent: false,
        }
    }

    /// Appends a sentence to the human-readable detail.
    pub fn note(&mut self, text: impl AsRef<str>) {
        if !self.detail.is_empty() {
            self.detail.push_str("; ");
        }
        self.detail.push_str(text.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_precedence_is_3_then_4_then_1() {
        assert_eq!(combine_exit(0, 1), 1);
        assert_eq!(combine_exit(1, 4), 4);
        assert_eq!(combine_exit(4, 1), 4);
        assert_eq!(combine_exit(4, 3), 3);
        assert_eq!(combine_exit(3, 4), 3);
        assert_eq!(combine_exit(1, 0), 1);
    }

    #[test]
    fn every_outcome_has_a_distinct_name() {
        let mut names: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
