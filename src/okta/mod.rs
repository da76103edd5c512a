//! Everything that speaks to Okta: the wire types, the HTTP client and its
//! typed errors.

pub mod auth;
pub mod client;
pub mod wire;

use std::fmt;
use std::str::FromStr;

/// The phone factor types the tool manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FactorType {
    #[default]
    Sms,
    Call,
}

impl FactorType {
    pub fn as_str(self) -> &'static str {
        match self {
            FactorType::Sms => "sms",
            FactorType::Call => "call",
        }
    }
}

impl fmt::Display for FactorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FactorType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sms" => Ok(FactorType::Sms),
            "call" => Ok(FactorType::Call),
            other => Err(format!("unknown factor type {other:?}: use sms or call")),
        }
    }
}

/// Whether a string has the shape of an Okta user id (`00u` + 17 more).
pub fn looks_like_user_id(s: &str) -> bool {
    s.len() == 20 && s.starts_with("00u") && s.bytes().all(|b| b.is_ascii_alphanumeric())
}
