//! Okta's JSON shapes, as the management API spec defines them.
//!
//! This is the one module the client and the simulator share: everything
//! else on either side is written independently, so a misreading of Okta's
//! behaviour is not silently mirrored. The contract checks against the
//! official spec keep these types honest.

use serde::{Deserialize, Serialize};

/// Response header carrying the ceiling of the rate-limit bucket hit.
pub const X_RATE_LIMIT_LIMIT: &str = "x-rate-limit-limit";
/// Response header carrying what is left in the current window.
pub const X_RATE_LIMIT_REMAINING: &str = "x-rate-limit-remaining";
/// Response header carrying the window's end, in UTC epoch seconds.
pub const X_RATE_LIMIT_RESET: &str = "x-rate-limit-reset";
/// Okta's request id, which Okta Support asks for.
pub const X_OKTA_REQUEST_ID: &str = "x-okta-request-id";

/// `User` (only the fields the tool reads or the simulator serves).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    /// `ACTIVE`, `STAGED`, `PROVISIONED`, `DEPROVISIONED`, ... (open set).
    pub status: String,
    #[serde(default)]
    pub profile: UserProfile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

/// `UserProfile` (the standard attributes the tool cares about).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    #[serde(default)]
    pub login: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
}

/// `UserFactor`, narrowed to what sms and call factors carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserFactor {
    pub id: String,
    /// `sms`, `call`, `push`, ... (open set: unknown types must not fail parsing).
    pub factor_type: String,
    #[serde(default)]
    pub provider: String,
    /// `ACTIVE`, `PENDING_ACTIVATION`, ... (open set).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub profile: Option<FactorProfile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default, rename = "_links", skip_serializing_if = "Option::is_none")]
    pub links: Option<serde_json::Value>,
}

impl UserFactor {
    /// The factor's phone number as Okta stores it, if it has one.
    pub fn phone_number(&self) -> Option<&str> {
        self.profile.as_ref()?.phone_number.as_deref()
    }

    /// The call factor's extension, if it has one.
    pub fn phone_extension(&self) -> Option<&str> {
        self.profile.as_ref()?.phone_extension.as_deref()
    }
}

/// `UserFactorSMSProfile` / `UserFactorCallProfile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FactorProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_extension: Option<String>,
}

/// Body of `POST /api/v1/users/{userId}/factors` for sms and call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollRequest {
    pub factor_type: String,
    pub provider: String,
    #[serde(default)]
    pub profile: Option<FactorProfile>,
}

/// Okta's `Error` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub error_summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_id: Option<String>,
    #[serde(default)]
    pub error_causes: Vec<ErrorCause>,
}

/// One item of `errorCauses`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCause {
    #[serde(default)]
    pub error_summary: String,
}
