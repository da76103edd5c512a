//! Pure helpers behind the simulator's behaviour: phone-number acceptance,
//! id and timestamp formats, the `search`/`filter` subset, and URL coding.
//!
//! Nothing here touches shared state, so every rule can be tested on its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distr::Alphanumeric;

/// NANP area codes reserved for toll-free service; Okta refuses them for
/// sms/call (signin-widget PR #2321, docs/okta-behaviour.md, F11b).
const NANP_TOLL_FREE: [&str; 7] = ["800", "833", "844", "855", "866", "877", "888"];

/// Longest `phoneExtension` the spec allows on a call factor.
pub(crate) const MAX_EXTENSION_LEN: usize = 15;

/// Turns what a client sent as `profile.phoneNumber` into `+digits`, or
/// `None` when this stand-in for Okta's lenient parser would reject it.
///
/// Accepted: spaces, dashes, dots and brackets anywhere, one optional
/// leading `+`, then a country code and national number of 7 to 15 digits
/// not starting with 0. Numbers in country code 1 must have exactly 11
/// digits, a real-looking area code and exchange, and no toll-free area code.
pub(crate) fn normalize_phone(input: &str) -> Option<String> {
    let trimmed = input.trim();
    // The `+` is optional: Okta reads the leading digits as a country code
    // either way (docs/okta-behaviour.md, F11b).
    let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\t' | '-' | '.' | '(' | ')' | '[' | ']' => {}
            _ => return None,
        }
    }
    if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    if digits.starts_with('1') && !nanp_ok(&digits) {
        return None;
    }
    Some(format!("+{digits}"))
}

fn nanp_ok(digits: &str) -> bool {
    if digits.len() != 11 {
        return false;
    }
    let area = &digits[1..4];
    let exchange = &digits[4..7];
    let b = area.as_bytes();
    let area_ok = (b'2'..=b'9').contains(&b[0]) && &area[1..] != "11";
    let exchange_ok = (b'2'..=b'9').contains(&exchange.as_bytes()[0]);
    area_ok && exchange_ok && !NANP_TOLL_FREE.contains(&area)
}

/// Digits only: how fault matchers and tests compare numbers.
pub(crate) fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// `n` random ASCII letters and digits.
pub(crate) fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A fresh 20-character factor id with Okta's per-type prefix.
pub(crate) fn new_factor_id(factor_type: &str) -> String {
    format!("{}{}", factor_prefix(factor_type), random_alnum(17))
}

/// A 20-character id that stays the same for the same seed, so factors
/// loaded from `org.json` without an id get the same id on every run.
pub(crate) fn stable_factor_id(factor_type: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // FNV-1a: small, stable across Rust releases (unlike `DefaultHasher`).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes().chain(factor_type.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = String::from(factor_prefix(factor_type));
    for _ in 0..17 {
        let idx = (h % ALPHABET.len() as u64) as usize;
        out.push(char::from(ALPHABET[idx]));
        h = h.rotate_left(7).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    }
    out
}

fn factor_prefix(factor_type: &str) -> &'static str {
    match factor_type {
        "sms" => "mbl",
        "call" => "clf",
        "question" => "ufs",
        "push" => "opf",
        "email" => "emf",
        "token:software:totp" => "ost",
        "webauthn" => "fwf",
        _ => "fac",
    }
}

/// Okta's `errorId` style: `oae` plus 22 characters.
pub(crate) fn new_error_id() -> String {
    format!("oae{}", random_alnum(22))
}

/// A unique 27-character `X-Okta-Request-Id`: random head, sequence tail.
pub(crate) fn new_request_id(seq: u64) -> String {
    format!("{}{:011}", random_alnum(16), seq % 100_000_000_000)
}

/// A six-digit one-time passcode.
pub(crate) fn new_otp() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// ISO-8601 with milliseconds, as Okta writes `created`/`lastUpdated`.
pub(crate) fn iso_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Whole epoch seconds at or after `t`: a `Reset` a client may trust.
pub(crate) fn epoch_secs_ceil(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whole epoch seconds at or before `t`, the resolution of `Date`.
pub(crate) fn epoch_secs_floor(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Okta's boolean query parameters are read the JAX-RS way: `true` in any
/// case is true, and every other value (including typos) is false.
pub(crate) fn query_bool(v: Option<&str>) -> bool {
    v.is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// Percent-decodes a path. Invalid escapes are kept literally, and bytes
/// that are not UTF-8 are replaced, as a lenient web server would.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes a query-string value so it survives a round trip through a
/// `Link` header (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How string values are compared: `search` ignores case, `filter` does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    IgnoreCase,
    Exact,
}

/// One `attribute eq "value"` clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    pub attr: String,
    pub value: String,
}

/// A flat `a or b or c` / `a and b` expression, which is all the tool and
/// its tests need of Okta's SCIM-like grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expr {
    pub clauses: Vec<Clause>,
    /// `true` when the clauses are joined by `and`.
    pub all: bool,
}

/// Attributes `filter` accepts, per the spec's `filter` description.
const FILTER_ATTRS: [&str; 7] = [
    "status",
    "lastUpdated",
    "id",
    "profile.login",
    "profile.email",
    "profile.firstName",
    "profile.lastName",
];

/// Parses a `search` (any `profile.*`, `id`, `status`) or `filter`
/// expression. The error text says what this simulator understands.
pub(crate) fn parse_expr(input: &str, is_filter: bool) -> Result<Expr, String> {
    let tokens = tokenize(input)?;
    let mut clauses = Vec::new();
    let mut joiner: Option<bool> = None;
    let mut i = 0;
    loop {
        let (attr, op, value) = match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
            (Some(Token::Word(a)), Some(Token::Word(o)), Some(Token::Quoted(v))) => (a, o, v),
            _ => return Err(unsupported(input)),
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(unsupported(input));
        }
        let known = attr == "id" || attr == "status" || attr.starts_with("profile.");
        if !known || (is_filter && !FILTER_ATTRS.contains(&attr.as_str())) {
            return Err(unsupported(input));
        }
        clauses.push(Clause {
            attr: attr.clone(),
            value: value.clone(),
        });
        i += 3;
        match tokens.get(i) {
            None => break,
            Some(Token::Word(w))
                if w.eq_ignore_ascii_case("or") || w.eq_ignore_ascii_case("and") =>
            {
                let all = w.eq_ignore_ascii_case("and");
                if joiner.is_some_and(|j| j != all) {
                    return Err(unsupported(input));
                }
                joiner = Some(all);
                i += 1;
            }
            Some(_) => return Err(unsupported(input)),
        }
    }
    Ok(Expr {
        clauses,
        all: joiner.unwrap_or(false),
    })
}

fn unsupported(input: &str) -> String {
    format!(
        "The simulator understands only `attribute eq \"value\"` clauses joined by all-or or all-and; got: {input}"
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
}

fn tokenize(input: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut v = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(e) => v.push(e),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            if !closed {
                return Err(format!("Unterminated quoted value in: {input}"));
            }
            tokens.push(Token::Quoted(v));
        } else if c == '(' || c == ')' {
            return Err(unsupported(input));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            tokens.push(Token::Word(w));
        }
    }
    Ok(tokens)
}

/// Whether `actual` satisfies one clause's value under `cmp`.
pub(crate) fn value_matches(actual: &str, wanted: &str, cmp: Compare) -> bool {
    match cmp {
        Compare::Exact => actual == wanted,
        Compare::IgnoreCase => actual.to_lowercase() == wanted.to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_formats_okta_tolerates_are_normalised() {
        assert_eq!(
            normalize_phone("+1 213-555-0142").as_deref(),
            Some("+12135550142")
        );
        assert_eq!(
            normalize_phone("1 (213) 555.0142").as_deref(),
            Some("+12135550142")
        );
        assert_eq!(
            normalize_phone("162 840 01133").as_deref(),
            Some("+16284001133")
        );
        assert_eq!(
            normalize_phone("+44 20 7946 0958").as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn phone_rejections_follow_f11() {
        for bad in [
            "",
            "+",
            "+1 213 555 014",
            "+1 213 555 01422",
            "+1 800 555 0142",
            "+1 888 555 0142",
            "+1 113 555 0142",
            "+1 211 555 0142",
            "+1 213 155 0142",
            "4.4770090012E+11",
            "+0 123 4567",
            "++12135550142",
            "213-555-0142 x12",
            "12345",
            "+1234567890123456",
        ] {
            assert_eq!(normalize_phone(bad), None, "{bad:?} should be invalid");
        }
    }

    #[test]
    fn ids_have_okta_shapes() {
        let id = new_factor_id("sms");
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("mbl"));
        assert!(new_factor_id("call").starts_with("clf"));
        assert_eq!(new_request_id(7).len(), 27);
        assert_eq!(
            stable_factor_id("sms", "u1#0"),
            stable_factor_id("sms", "u1#0")
        );
        assert_ne!(
            stable_factor_id("sms", "u1#0"),
            stable_factor_id("sms", "u1#1")
        );
        assert_eq!(stable_factor_id("call", "x").len(), 20);
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%40b.com"), "a@b.com");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("x%2"), "x%2");
    }

    #[test]
    fn expressions_cover_login_and_email_lookups() {
        let e = parse_expr(r#"profile.login eq "a+b@example.com""#, false).unwrap();
        assert_eq!(e.clauses[0].attr, "profile.login");
        assert_eq!(e.clauses[0].value, "a+b@example.com");
        let e = parse_expr(r#"profile.login EQ "x" or profile.email eq "y""#, true).unwrap();
        assert_eq!(e.clauses.len(), 2);
        assert!(!e.all);
        assert!(parse_expr(r#"profile.login sw "x""#, false).is_err());
        assert!(parse_expr(r#"profile.city eq "x""#, true).is_err());
        assert!(parse_expr(r#"profile.city eq "x""#, false).is_ok());
        assert!(parse_expr(r#"a eq "x" or b eq "y" and c eq "z""#, false).is_err());
        assert!(parse_expr(r#"profile.login eq "x"#, false).is_err());
        assert!(parse_expr("", false).is_err());
        let e = parse_expr(r#"profile.login eq "say \"hi\"""#, false).unwrap();
        assert_eq!(e.clauses[0].value, "say \"hi\"");
    }

    #[test]
    fn query_values_round_trip() {
        let v = r#"profile.login eq "a+b/c@example.com""#;
        assert_eq!(percent_decode(&encode_query_value(v)), v);
        assert!(query_bool(Some("TRUE")));
        assert!(!query_bool(Some("yes")));
        assert!(!query_bool(None));
    }
}
