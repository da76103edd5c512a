//! Phone numbers: from whatever a spreadsheet holds to exact E.164, with
//! real libphonenumber metadata, and masking for logs.
//!
//! INTERFACE STUB: being implemented.

use std::fmt;

pub use phonenumber::country::Id as Region;

/// A number ready to send to Okta.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    /// `+` and digits only, e.g. `+12135550113`.
    pub e164: String,
    /// A call factor's extension (digits), when the input gave one.
    pub extension: Option<String>,
}

/// Why a cell is not a usable phone number. `Display` is the message the
/// user sees (without the row/column prefix, which the caller adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneError(pub String);

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options that change how numbers are judged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhoneOptions {
    /// Region for numbers written without `+` (national format).
    pub default_region: Option<Region>,
    /// Accept numbers that are possible (right length) but outside every
    /// range the metadata knows, for ranges newer than the metadata.
    pub allow_unknown_ranges: bool,
}

/// Parses one cell into E.164.
pub fn normalize(raw: &str, opts: &PhoneOptions) -> Result<Phone, PhoneError> {
    let _ = (raw, opts);
    unimplemented!("phone::normalize")
}

/// Parses a region code such as `US` or `gb`.
pub fn parse_region(code: &str) -> Result<Region, String> {
    code.to_ascii_uppercase()
        .parse::<Region>()
        .map_err(|_| format!("unknown region {code:?}: use an ISO 3166 code such as US or GB"))
}

/// Digits only, for comparing a number Okta stored (which may carry dashes
/// or spaces) with an E.164 one.
pub fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether Okta's stored number is the same as an E.164 number.
pub fn same_number(stored: &str, e164: &str) -> bool {
    let a = digits(stored);
    !a.is_empty() && a == digits(e164)
}

/// A number as logs may show it: only the last two digits survive.
pub fn mask(number: &str) -> String {
    let d = digits(number);
    if d.len() <= 2 {
        return "**".to_string();
    }
    format!("+{}{}", "*".repeat(d.len() - 2), &d[d.len() - 2..])
}
