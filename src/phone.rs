//! Phone numbers: from whatever a spreadsheet holds to exact E.164, with
//! real libphonenumber metadata, and masking for logs.
//!
//! Why this is stricter than `phonenumber::parse` on its own: that parser is
//! built to find a number in free text, so it maps letters to keypad digits,
//! skips leading junk and guesses extensions. For a second factor a guess
//! that sends codes to a stranger is worse than a refusal, so this module
//! first checks the cell's characters itself, recognises the typical
//! spreadsheet damage (scientific notation, `.0`, a dropped `+` or `0`) and
//! names it, and only then hands a clean digit string to the metadata.
//!
//! Messages never repeat the whole number: they may end up in logs, and the
//! row is identified by its row number anyway.

use std::collections::BTreeSet;
use std::fmt;

use phonenumber::metadata::{DATABASE, Metadata};
use phonenumber::{PhoneNumber, Type};

use crate::okta::FactorType;

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

/// A parsed number and the remarks worth showing the user about how it was
/// read (non-fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub phone: Phone,
    pub warnings: Vec<String>,
}

/// The longest extension accepted (Okta's own limit for `phoneExtension`
/// is not documented; 15 digits covers every PBX plan seen in practice).
pub const MAX_EXTENSION_LEN: usize = 15;

/// Parses one cell into E.164.
///
/// Extensions are refused here, as for an sms factor: a caller that works
/// with call factors uses [`normalize_for`] with [`FactorType::Call`], which
/// also returns the warnings.
pub fn normalize(raw: &str, opts: &PhoneOptions) -> Result<Phone, PhoneError> {
    normalize_for(raw, opts, FactorType::Sms).map(|n| n.phone)
}

/// Parses one cell into E.164 for a factor type: only `call` may carry an
/// extension (written in the cell as `x12`, `ext. 12`, `;ext=12`, `#12`).
pub fn normalize_for(
    raw: &str,
    opts: &PhoneOptions,
    factor_type: FactorType,
) -> Result<Normalized, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(err("the phone number is empty"));
    }
    check_spreadsheet_damage(text)?;
    let (number_part, extension) = split_extension(text)?;
    if let Some(ext) = &extension
        && factor_type != FactorType::Call
    {
        return Err(err(format!(
            "the number carries an extension ({:?}), but {} factors cannot dial one: \
             remove it (extensions are only for --factor-type call)",
            ext.marker_and_digits, factor_type
        )));
    }
    let cleaned = clean_characters(number_part)?;
    let mut out = if cleaned.plus {
        international(&cleaned.digits, opts)?
    } else {
        national(&cleaned.digits, opts)?
    };
    if factor_type == FactorType::Sms
        && let Some(note) = sms_doubt(&out.number)
    {
        out.warnings.push(note);
    }
    Ok(Normalized {
        phone: Phone {
            e164: out.e164,
            extension: extension.map(|e| e.digits),
        },
        warnings: out.warnings,
    })
}

/// Checks an extension given in a column of its own: digits only, at most
/// [`MAX_EXTENSION_LEN`]. Empty means "no extension" (`Ok(None)`).
pub fn normalize_extension(raw: &str) -> Result<Option<String>, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if is_decimal_artifact(text) {
        return Err(err(
            "the extension ends in \".0\": the spreadsheet stored it as a decimal number; \
             format the column as Text and re-export",
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(format!(
            "the extension must be digits only, not {text:?}"
        )));
    }
    if text.len() > MAX_EXTENSION_LEN {
        return Err(err(format!(
            "the extension has {} digits; at most {MAX_EXTENSION_LEN} are allowed",
            text.len()
        )));
    }
    Ok(Some(text.to_string()))
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

fn err(message: impl Into<String>) -> PhoneError {
    PhoneError(message.into())
}

const FORMAT_AS_TEXT: &str = "format the column as Text and re-export";

const ALLOWED: &str = "only digits, spaces, ( ) - . / and a leading + are allowed";

/// Spreadsheets store a long digit string as a floating-point number; what
/// comes out is not a phone number any more, and digits may be gone for good,
/// so these are refused with the cause rather than repaired.
fn check_spreadsheet_damage(text: &str) -> Result<(), PhoneError> {
    if is_scientific(text) {
        return Err(err(format!(
            "the spreadsheet turned the number into scientific notation, which loses digits; \
             {FORMAT_AS_TEXT}"
        )));
    }
    if is_decimal_artifact(text) {
        return Err(err(format!(
            "the number ends in \".0\": the spreadsheet stored it as a decimal number; \
             {FORMAT_AS_TEXT}"
        )));
    }
    if is_thousands_grouped(text) {
        return Err(err(format!(
            "the number has thousands separators (\",\"): the spreadsheet formatted it as an \
             amount; {FORMAT_AS_TEXT}"
        )));
    }
    Ok(())
}

/// `4.4770090012E+11`, `1.2135550113e10`, `4,47E+11` (decimal comma locales).
fn is_scientific(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let Some((mantissa, exponent)) = body.split_once(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let (int, frac) = mantissa.split_once(['.', ',']).unwrap_or((mantissa, "0"));
    all_digits(int) && all_digits(frac) && all_digits(exponent)
}

/// `12135550113.0`: a whole number that went through a float column.
fn is_decimal_artifact(text: &str) -> bool {
    let body = text.strip_prefix('+').unwrap_or(text);
    match body.split_once('.') {
        Some((int, frac)) => all_digits(int) && !frac.is_empty() && frac.bytes().all(|b| b == b'0'),
        None => false,
    }
}

/// `12,135,550,113`: a number format with grouping, optionally with `.0`.
fn is_thousands_grouped(text: &str) -> bool {
    let body = text.split_once('.').map_or(text, |(int, frac)| {
        if frac.bytes().all(|b| b == b'0') {
            int
        } else {
            text
        }
    });
    let mut groups = body.split(',');
    let Some(first) = groups.next() else {
        return false;
    };
    let rest: Vec<&str> = groups.collect();
    !rest.is_empty()
        && all_digits(first)
        && first.len() <= 3
        && rest.iter().all(|g| g.len() == 3 && all_digits(g))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

struct CellExtension {
    /// As written, for the message (e.g. `x123`).
    marker_and_digits: String,
    digits: String,
}

/// Markers that introduce an extension, longest first so that `ext.` wins
/// over `ext` and `x`.
const EXTENSION_MARKERS: [&str; 8] = [
    ";ext=",
    "extension",
    "extn.",
    "extn",
    "ext.",
    "ext",
    "x",
    "#",
];

/// Splits `number x123` into the number and the extension. A letter that
/// starts no marker is left for the character check to report.
fn split_extension(text: &str) -> Result<(&str, Option<CellExtension>), PhoneError> {
    let Some(start) = text
        .char_indices()
        .find(|&(_, c)| c.is_ascii_alphabetic() || c == '#' || c == ';')
        .map(|(i, _)| i)
    else {
        return Ok((text, None));
    };
    let tail = &text[start..];
    let lower = tail.to_ascii_lowercase();
    let Some(marker) = EXTENSION_MARKERS.iter().find(|m| lower.starts_with(**m)) else {
        return Ok((text, None));
    };
    let after = &tail[marker.len()..];
    // People write `x 12`, `ext: 12`, `ext.12`: separators are not digits.
    let ext = after.trim_start_matches(|c: char| c.is_whitespace() || c == ':' || c == '.');
    let ext = ext.trim_end();
    // `x` inside a word (`fax`, `xyz`) is not an extension: report letters.
    if marker.chars().all(|c| c.is_ascii_alphabetic()) && !all_digits(ext) && has_letter(ext) {
        return Ok((text, None));
    }
    if !all_digits(ext) {
        return Err(err(format!(
            "the extension after {:?} must be 1 to {MAX_EXTENSION_LEN} digits",
            tail[..marker.len()].trim()
        )));
    }
    if ext.len() > MAX_EXTENSION_LEN {
        return Err(err(format!(
            "the extension has {} digits; at most {MAX_EXTENSION_LEN} are allowed",
            ext.len()
        )));
    }
    let number = text[..start].trim_end();
    Ok((
        number,
        Some(CellExtension {
            marker_and_digits: tail.trim().to_string(),
            digits: ext.to_string(),
        }),
    ))
}

fn has_letter(s: &str) -> bool {
    s.chars().any(char::is_alphabetic)
}

struct Cleaned {
    plus: bool,
    digits: String,
}

/// Whether a character is layout that people and spreadsheets put between
/// digit groups.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '(' | ')' | '/' | '\u{2010}'..='\u{2015}' | '\u{2212}'
        )
}

/// Reduces the number to its digits, refusing anything that is not layout:
/// the metadata parser would otherwise read letters as keypad digits.
fn clean_characters(text: &str) -> Result<Cleaned, PhoneError> {
    let letters: String = text.chars().filter(|c| c.is_alphabetic()).collect();
    if !letters.is_empty() {
        let shown: String = letters.chars().take(20).collect();
        return Err(err(format!(
            "the number contains letters ({shown:?}): {ALLOWED}"
        )));
    }
    let body = text.trim_start();
    let (plus, body) = match body.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == '+' {
            return Err(err(format!(
                "the number has a + that is not at the start: {ALLOWED}"
            )));
        } else if !is_separator(c) {
            return Err(err(format!("the number contains {c:?}: {ALLOWED}")));
        }
    }
    if digits.is_empty() {
        return Err(err("the phone number has no digits"));
    }
    // E.164 allows 15 digits; 17 leaves room for a trunk or IDD prefix.
    if digits.len() > 17 {
        return Err(err(format!(
            "the number has {} digits, more than any phone number has (E.164 allows 15)",
            digits.len()
        )));
    }
    Ok(Cleaned { plus, digits })
}

struct Parsed {
    number: PhoneNumber,
    e164: String,
    warnings: Vec<String>,
}

/// A number written with `+`: the region option plays no part.
fn international(digits: &str, opts: &PhoneOptions) -> Result<Parsed, PhoneError> {
    let number =
        phonenumber::parse(None, format!("+{digits}")).map_err(|e| parse_failure(&e, None))?;
    judge(number, opts, None, Vec::new())
}

/// A number written without `+`: only a default region can say what it is.
fn national(digits: &str, opts: &PhoneOptions) -> Result<Parsed, PhoneError> {
    let Some(region) = opts.default_region else {
        return Err(without_region(digits));
    };
    let number = phonenumber::parse(Some(region), digits);
    let number = match number {
        Ok(n) => n,
        Err(e) => {
            if let Some(hint) = repair_hints(digits, region) {
                return Err(err(format!("{} {hint}", not_valid_in(region))));
            }
            return Err(parse_failure(&e, Some(region)));
        }
    };
    if !number.is_valid() {
        // Damage is checked before the length and range verdicts: "too long
        // for US" is true of `442079460000` but does not say what went wrong.
        if let Some(hint) = repair_hints(digits, region) {
            return Err(err(format!("{} {hint}", not_valid_in(region))));
        }
    }
    let code = number.code().value();
    let read_as = match number.code().source() {
        phonenumber::country::Source::Number => {
            format!("read the leading {code} as the country code +{code} (written without +)")
        }
        phonenumber::country::Source::Idd => format!(
            "read the leading digits as the international dialling prefix of {}",
            region.as_ref()
        ),
        _ => format!(
            "national number read as {} (--default-region {}); write +{code}… to be explicit",
            region.as_ref(),
            region.as_ref()
        ),
    };
    judge(number, opts, Some(region), vec![read_as])
}

fn not_valid_in(region: Region) -> String {
    format!("the number is not a valid {} number,", region.as_ref())
}

/// What a number without `+` and without a default region could have been.
fn without_region(digits: &str) -> PhoneError {
    let mut candidates = vec![digits];
    if let Some(rest) = digits.strip_prefix("00") {
        candidates.push(rest);
    }
    if let Some(rest) = digits.strip_prefix("011") {
        candidates.push(rest);
    }
    for candidate in candidates {
        if let Some(label) = valid_with_plus(candidate) {
            return err(format!(
                "the number has no leading + and no --default-region is set; with a + it is a \
                 valid {label} number: the spreadsheet probably dropped the +. Write it as \
                 +country code and number ({FORMAT_AS_TEXT}), or pass --default-region if the \
                 column holds national numbers"
            ));
        }
    }
    err(
        "the number has no leading + and no --default-region is set: write it in \
         international format (+ and country code), or pass --default-region \
         (for example --default-region US) for national numbers",
    )
}

/// Suggestions for a national number the region rejects, when a dropped
/// character explains it. `None` when nothing explains it.
fn repair_hints(digits: &str, region: Region) -> Option<String> {
    let mut plus_label = valid_with_plus(digits);
    if plus_label.is_none() {
        // `0044…` read with a region whose international prefix is not `00`.
        for prefix in ["00", "011"] {
            if let Some(rest) = digits.strip_prefix(prefix)
                && let Some(label) = valid_with_plus(rest)
            {
                plus_label = Some(label);
                break;
            }
        }
    }
    let zero = phonenumber::parse(Some(region), format!("0{digits}"))
        .map(|n| n.is_valid())
        .unwrap_or(false);
    let plus_text = plus_label.map(|label| {
        format!(
            "with a leading + it is a valid {label} number: the spreadsheet probably dropped the +"
        )
    });
    let zero_text = zero.then(|| {
        format!(
            "with a leading 0 it is a valid {} number: the spreadsheet probably dropped the 0",
            region.as_ref()
        )
    });
    match (plus_text, zero_text) {
        (Some(p), Some(z)) => Some(format!(
            "but {p}, or {z}; write the number in full and {FORMAT_AS_TEXT}"
        )),
        (Some(p), None) | (None, Some(p)) => Some(format!(
            "but {p}; write the number in full and {FORMAT_AS_TEXT}"
        )),
        (None, None) => None,
    }
}

/// `Some("GB (+44)")` when `+digits` is a valid number.
fn valid_with_plus(digits: &str) -> Option<String> {
    let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
    number
        .is_valid()
        .then(|| code_label(number.code().value(), None))
}

/// The verdict on a parsed number: valid, acceptable by opt-in, or refused
/// with the reason.
fn judge(
    number: PhoneNumber,
    opts: &PhoneOptions,
    region: Option<Region>,
    mut warnings: Vec<String>,
) -> Result<Parsed, PhoneError> {
    let code = number.code().value();
    let national = number.national().to_string();
    let e164 = format!("+{code}{national}");
    let label = code_label(code, region);
    // Defence against a parser surprise: Okta must get `+` and 1..=15 digits.
    let well_formed = e164.len() <= 16 && e164.len() > 2 && all_digits(&e164[1..]);
    if !well_formed {
        return Err(err(format!(
            "the number does not form a valid international number ({} digits)",
            e164.len().saturating_sub(1)
        )));
    }
    if number.is_valid() {
        return Ok(Parsed {
            number,
            e164,
            warnings,
        });
    }
    let lengths = possible_lengths(judging_metadata(code, region));
    let len = national.len() as u16;
    match length_verdict(len, &lengths) {
        LengthVerdict::Possible => {
            if opts.allow_unknown_ranges {
                warnings.push(format!(
                    "accepted although it is in no range the metadata knows for {label} \
                     (--allow-unknown-ranges)"
                ));
                Ok(Parsed {
                    number,
                    e164,
                    warnings,
                })
            } else {
                Err(err(format!(
                    "the number has the right length for {label} but is in no range the \
                     phone-number metadata knows, so it is not a valid {label} number; check \
                     it, or pass --allow-unknown-ranges if it is from a newly allocated range"
                )))
            }
        }
        verdict => Err(err(length_message(verdict, len, &lengths, &label))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthVerdict {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    NoSuchLength,
}

/// Lengths (of the national significant number) that numbers of one region
/// can have. The crate's metadata leaves the general description's lengths
/// empty, so they are gathered from the number types, as libphonenumber does
/// when it builds its own tables.
struct Lengths {
    full: BTreeSet<u16>,
    local: BTreeSet<u16>,
}

fn possible_lengths(meta: Option<&Metadata>) -> Lengths {
    let mut full = BTreeSet::new();
    let mut local = BTreeSet::new();
    if let Some(meta) = meta {
        let d = meta.descriptors();
        let types = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        for desc in types.into_iter().flatten() {
            full.extend(desc.possible_length());
            local.extend(desc.possible_local_length());
        }
    }
    Lengths { full, local }
}

/// The metadata a number is judged by: the default region when the number
/// is from there, else the main region of its country code (a number outside
/// every known range cannot be placed more precisely).
fn judging_metadata(code: u16, region: Option<Region>) -> Option<&'static Metadata> {
    region
        .and_then(|r| DATABASE.by_id(r.as_ref()))
        .filter(|m| m.country_code() == code)
        .or_else(|| DATABASE.by_code(&code).and_then(|all| all.first().copied()))
}

fn length_verdict(len: u16, lengths: &Lengths) -> LengthVerdict {
    let (Some(&min), Some(&max)) = (lengths.full.first(), lengths.full.last()) else {
        // No length data at all: nothing to hold against the number.
        return LengthVerdict::Possible;
    };
    if lengths.full.contains(&len) {
        LengthVerdict::Possible
    } else if lengths.local.contains(&len) {
        LengthVerdict::LocalOnly
    } else if len < min {
        LengthVerdict::TooShort
    } else if len > max {
        LengthVerdict::TooLong
    } else {
        LengthVerdict::NoSuchLength
    }
}

fn length_message(verdict: LengthVerdict, len: u16, lengths: &Lengths, label: &str) -> String {
    let allowed = join_or(&lengths.full.iter().map(u16::to_string).collect::<Vec<_>>());
    let have = format!(
        "it has {len} digit{} after the country code, {label} numbers have {allowed}",
        if len == 1 { "" } else { "s" }
    );
    match verdict {
        LengthVerdict::LocalOnly => format!(
            "the number is too short for {label}: {have} (the area code seems to be missing)"
        ),
        LengthVerdict::TooShort => format!("the number is too short for {label}: {have}"),
        LengthVerdict::TooLong => format!("the number is too long for {label}: {have}"),
        LengthVerdict::NoSuchLength | LengthVerdict::Possible => {
            format!("the number has an impossible length for {label}: {have}")
        }
    }
}

/// `9`, `9 or 10`, `7, 9 or 10`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// How a country code is named in messages: the region the number is
/// judged by (`GB (+44)`), or the code alone for non-geographic services.
fn code_label(code: u16, region: Option<Region>) -> String {
    match judging_metadata(code, region).map(Metadata::id) {
        Some(id) if id != "001" => format!("{id} (+{code})"),
        _ => format!("+{code}"),
    }
}

/// Maps a parser error to a message that says what to check.
fn parse_failure(e: &phonenumber::ParseError, region: Option<Region>) -> PhoneError {
    use phonenumber::ParseError as P;
    match e {
        P::InvalidCountryCode => match region {
            None => err("the digits after + do not start with any country code"),
            Some(r) => err(format!(
                "the number cannot be read as a {} number or as an international one",
                r.as_ref()
            )),
        },
        P::TooShortNsn | P::TooShortAfterIdd => err("the number is too short to be a phone number"),
        P::TooLong => err("the number is too long to be a phone number"),
        P::NoNumber | P::MalformedInteger(_) => err("the cell does not hold a phone number"),
    }
}

/// A remark when the metadata says the number is of a kind that usually
/// cannot receive a text message. The metadata cannot tell fixed from mobile
/// everywhere (e.g. the US), so silence proves nothing.
fn sms_doubt(number: &PhoneNumber) -> Option<String> {
    let kind = match number.number_type(&DATABASE) {
        Type::FixedLine => "a fixed-line",
        Type::TollFree => "a toll-free",
        Type::PremiumRate => "a premium-rate",
        Type::SharedCost => "a shared-cost",
        Type::Uan => "a company (UAN)",
        Type::Voicemail => "a voicemail",
        Type::Pager => "a pager",
        _ => return None,
    };
    Some(format!(
        "the metadata lists this as {kind} number; it may not receive SMS"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(region: Option<Region>) -> PhoneOptions {
        PhoneOptions {
            default_region: region,
            allow_unknown_ranges: false,
        }
    }

    fn e164(raw: &str, region: Option<Region>) -> String {
        match normalize(raw, &opts(region)) {
            Ok(p) => p.e164,
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    fn refusal(raw: &str, o: &PhoneOptions, ft: FactorType) -> String {
        match normalize_for(raw, o, ft) {
            Ok(n) => panic!("{raw:?} accepted as {:?}", n.phone),
            Err(e) => e.0,
        }
    }

    fn refused(raw: &str, region: Option<Region>) -> String {
        refusal(raw, &opts(region), FactorType::Sms)
    }

    const US: Option<Region> = Some(Region::US);
    const GB: Option<Region> = Some(Region::GB);
    const IT: Option<Region> = Some(Region::IT);

    /// The fictional numbers the tests use must be valid per the metadata,
    /// or an acceptance test would prove nothing.
    #[test]
    fn the_fictional_test_numbers_are_valid_per_metadata() {
        for n in [
            "+12135550100",
            "+12135550113",
            "+12135550199",
            "+442079460123",
            "+61491570006",
            "+33199001234",
            "+390212345678",
        ] {
            let parsed = phonenumber::parse(None, n).expect(n);
            assert!(parsed.is_valid(), "{n} should be valid");
        }
        for n in ["+15552130113", "+447700900123"] {
            let parsed = phonenumber::parse(None, n).expect(n);
            assert!(!parsed.is_valid(), "{n} should be invalid");
        }
    }

    #[test]
    fn international_format_in_its_many_spellings() {
        for raw in [
            "+12135550113",
            "+1 213 555 0113",
            "+1-213-555-0113",
            "+1 (213) 555-0113",
            "+1.213.555.0113",
            "  +1 213 555 0113  ",
            "+1\u{a0}213\u{a0}555\u{a0}0113",
            "+1 213\u{2013}555\u{2013}0113",
        ] {
            assert_eq!(e164(raw, None), "+12135550113", "{raw:?}");
            assert_eq!(e164(raw, GB), "+12135550113", "{raw:?} with GB");
        }
        assert_eq!(e164("+44 (0)20 7946 0123", None), "+442079460123");
        assert_eq!(e164("+61 491 570 006", None), "+61491570006");
        assert_eq!(e164("+33 1 99 00 12 34", None), "+33199001234");
        // Italy keeps the leading 0 of fixed lines inside E.164.
        assert_eq!(e164("+39 02 1234 5678", None), "+390212345678");
    }

    #[test]
    fn international_number_has_no_warning_about_how_it_was_read() {
        let n = normalize_for("+1 213 555 0113", &opts(None), FactorType::Sms).unwrap();
        assert_eq!(n.warnings, Vec::<String>::new());
        assert_eq!(n.phone.extension, None);
    }

    #[test]
    fn national_numbers_use_the_default_region_and_say_so() {
        let n = normalize_for("(213) 555-0113", &opts(US), FactorType::Sms).unwrap();
        assert_eq!(n.phone.e164, "+12135550113");
        assert_eq!(
            n.warnings,
            vec!["national number read as US (--default-region US); write +1… to be explicit"]
        );
        assert_eq!(e164("020 7946 0123", GB), "+442079460123");
        assert_eq!(e164("0491 570 006", Some(Region::AU)), "+61491570006");
        assert_eq!(e164("02 1234 5678", IT), "+390212345678");
    }

    #[test]
    fn country_code_without_plus_is_read_with_a_warning() {
        let n = normalize_for("1 213 555 0113", &opts(US), FactorType::Sms).unwrap();
        assert_eq!(n.phone.e164, "+12135550113");
        assert_eq!(
            n.warnings,
            vec!["read the leading 1 as the country code +1 (written without +)"]
        );
    }

    #[test]
    fn international_dialling_prefix_of_the_region_is_understood() {
        let n = normalize_for("011 44 20 7946 0123", &opts(US), FactorType::Sms).unwrap();
        assert_eq!(n.phone.e164, "+442079460123");
        assert_eq!(
            n.warnings[0],
            "read the leading digits as the international dialling prefix of US"
        );
        assert_eq!(e164("00 1 213 555 0113", GB), "+12135550113");
    }

    #[test]
    fn sms_to_a_number_the_metadata_calls_fixed_line_is_warned_about() {
        let n = normalize_for("+44 20 7946 0123", &opts(None), FactorType::Sms).unwrap();
        assert_eq!(
            n.warnings,
            vec!["the metadata lists this as a fixed-line number; it may not receive SMS"]
        );
        let n = normalize_for("+44 20 7946 0123", &opts(None), FactorType::Call).unwrap();
        assert!(n.warnings.is_empty());
    }

    #[test]
    fn empty_cell() {
        assert_eq!(refused("", US), "the phone number is empty");
        assert_eq!(refused("   ", US), "the phone number is empty");
    }

    #[test]
    fn scientific_notation_is_named() {
        let msg = "the spreadsheet turned the number into scientific notation, which loses \
                   digits; format the column as Text and re-export";
        for raw in [
            "4.4770090012E+11",
            "1.2135550113e10",
            "4,47701E+11",
            "2E+10",
            "+1.2E-3",
        ] {
            assert_eq!(refused(raw, US), msg, "{raw:?}");
        }
    }

    #[test]
    fn trailing_decimal_zero_is_named() {
        let msg = "the number ends in \".0\": the spreadsheet stored it as a decimal number; \
                   format the column as Text and re-export";
        assert_eq!(refused("12135550113.0", US), msg);
        assert_eq!(refused("+12135550113.00", None), msg);
        // A dotted layout is not a decimal.
        assert_eq!(e164("213.555.0100", US), "+12135550100");
    }

    #[test]
    fn thousands_separators_are_named() {
        assert_eq!(
            refused("12,135,550,113", US),
            "the number has thousands separators (\",\"): the spreadsheet formatted it as an \
             amount; format the column as Text and re-export"
        );
    }

    #[test]
    fn letters_are_refused_not_read_as_keypad_digits() {
        assert_eq!(
            refused("213-555-FLOW", US),
            "the number contains letters (\"FLOW\"): only digits, spaces, ( ) - . / and a \
             leading + are allowed"
        );
        assert_eq!(
            refused("call 2135550113", US),
            "the number contains letters (\"call\"): only digits, spaces, ( ) - . / and a \
             leading + are allowed"
        );
        assert_eq!(
            refused("n/a", US),
            "the number contains letters (\"na\"): only digits, spaces, ( ) - . / and a \
             leading + are allowed"
        );
    }

    #[test]
    fn stray_characters_are_refused() {
        assert_eq!(
            refused("'+12135550113", US),
            "the number contains '\\'': only digits, spaces, ( ) - . / and a leading + are allowed"
        );
        assert_eq!(
            refused("213*555*0113", US),
            "the number contains '*': only digits, spaces, ( ) - . / and a leading + are allowed"
        );
        assert_eq!(
            refused("1+2135550113", US),
            "the number has a + that is not at the start: only digits, spaces, ( ) - . / and a \
             leading + are allowed"
        );
        assert_eq!(refused("+", US), "the phone number has no digits");
        assert_eq!(refused("( ) -", US), "the phone number has no digits");
        assert_eq!(
            refused("+1234567890123456789", None),
            "the number has 19 digits, more than any phone number has (E.164 allows 15)"
        );
    }

    #[test]
    fn no_plus_and_no_region() {
        assert_eq!(
            refused("2135550113", None),
            "the number has no leading + and no --default-region is set: write it in \
             international format (+ and country code), or pass --default-region (for example \
             --default-region US) for national numbers"
        );
    }

    #[test]
    fn lost_plus_without_region_is_detected() {
        let want = "the number has no leading + and no --default-region is set; with a + it is \
                    a valid GB (+44) number: the spreadsheet probably dropped the +. Write it as \
                    +country code and number (format the column as Text and re-export), or pass \
                    --default-region if the column holds national numbers";
        assert_eq!(refused("442079460123", None), want);
        assert_eq!(refused("0044 20 7946 0123", None), want);
    }

    #[test]
    fn lost_plus_with_region_is_detected() {
        assert_eq!(
            refused("442079460123", US),
            "the number is not a valid US number, but with a leading + it is a valid GB (+44) \
             number: the spreadsheet probably dropped the +; write the number in full and format \
             the column as Text and re-export"
        );
        // `00` is not the US international prefix, but the intent is clear enough to suggest.
        assert_eq!(
            refused("00 44 20 7946 0123", US),
            "the number is not a valid US number, but with a leading + it is a valid GB (+44) \
             number: the spreadsheet probably dropped the +; write the number in full and format \
             the column as Text and re-export"
        );
    }

    #[test]
    fn lost_leading_zero_is_detected() {
        // IT fixed lines keep their 0; a spreadsheet that reads the cell as
        // a number drops it. 02 1234 5678 is the metadata's example number.
        assert_eq!(
            refused("212345678", IT),
            "the number is not a valid IT number, but with a leading 0 it is a valid IT number: \
             the spreadsheet probably dropped the 0; write the number in full and format the \
             column as Text and re-export"
        );
    }

    #[test]
    fn a_dropped_trunk_zero_is_harmless_where_it_is_not_part_of_the_number() {
        // In GB the 0 is a trunk prefix, not part of E.164: without it the
        // number is still complete, so there is nothing to report.
        assert_eq!(e164("20 7946 0123", GB), "+442079460123");
        assert_eq!(e164("020 7946 0123", GB), "+442079460123");
    }

    #[test]
    fn wrong_length_names_the_region() {
        assert_eq!(
            refused("213 555 011", US),
            "the number is too short for US (+1): it has 9 digits after the country code, US \
             (+1) numbers have 10"
        );
        assert_eq!(
            refused("+1 213 555 01134", None),
            "the number is too long for US (+1): it has 11 digits after the country code, US \
             (+1) numbers have 10"
        );
        assert_eq!(
            refused("555 0113", US),
            "the number is too short for US (+1): it has 7 digits after the country code, US \
             (+1) numbers have 10 (the area code seems to be missing)"
        );
        assert_eq!(
            refused("+61 491 570 00612", None),
            "the number has an impossible length for AU (+61): it has 11 digits after the \
             country code, AU (+61) numbers have 5, 6, 7, 8, 9, 10 or 12"
        );
    }

    #[test]
    fn unknown_range_needs_the_opt_in() {
        let want = "the number has the right length for US (+1) but is in no range the \
                    phone-number metadata knows, so it is not a valid US (+1) number; check it, \
                    or pass --allow-unknown-ranges if it is from a newly allocated range";
        assert_eq!(refused("+1 555 213 0113", None), want);
        assert_eq!(refused("555 213 0113", US), want);
        let gb = refused("+44 7700 900123", None);
        assert!(
            gb.starts_with("the number has the right length for GB (+44)"),
            "{gb}"
        );
    }

    #[test]
    fn unknown_range_is_accepted_with_the_opt_in_and_a_warning() {
        let o = PhoneOptions {
            default_region: None,
            allow_unknown_ranges: true,
        };
        let n = normalize_for("+1 555 213 0113", &o, FactorType::Sms).unwrap();
        assert_eq!(n.phone.e164, "+15552130113");
        assert_eq!(
            n.warnings,
            vec![
                "accepted although it is in no range the metadata knows for US (+1) \
                 (--allow-unknown-ranges)"
            ]
        );
        // The opt-in does not excuse a wrong length.
        assert_eq!(
            refusal("+1 555 213 011", &o, FactorType::Sms),
            "the number is too short for US (+1): it has 9 digits after the country code, US \
             (+1) numbers have 10"
        );
    }

    #[test]
    fn unknown_country_code() {
        assert_eq!(
            refused("+999 1234 5678", None),
            "the digits after + do not start with any country code"
        );
    }

    #[test]
    fn extension_is_refused_for_sms() {
        assert_eq!(
            refused("+1 213 555 0113 x123", None),
            "the number carries an extension (\"x123\"), but sms factors cannot dial one: \
             remove it (extensions are only for --factor-type call)"
        );
        assert_eq!(
            refused("+1 213 555 0113 ext. 12", None),
            "the number carries an extension (\"ext. 12\"), but sms factors cannot dial one: \
             remove it (extensions are only for --factor-type call)"
        );
        // The convenience entry point is as strict as sms.
        assert!(normalize("+12135550113;ext=5", &opts(None)).is_err());
    }

    #[test]
    fn extension_is_kept_for_call() {
        for (raw, ext) in [
            ("+1 213 555 0113 x123", "123"),
            ("+1 213 555 0113 X 123", "123"),
            ("+1 213 555 0113 ext. 12", "12"),
            ("+1 213 555 0113 Ext: 12", "12"),
            ("+1 213 555 0113 extension 4711", "4711"),
            ("+12135550113;ext=5", "5"),
            ("+1 213 555 0113 #77", "77"),
        ] {
            let n = normalize_for(raw, &opts(None), FactorType::Call).unwrap();
            assert_eq!(n.phone.e164, "+12135550113", "{raw:?}");
            assert_eq!(n.phone.extension.as_deref(), Some(ext), "{raw:?}");
        }
    }

    #[test]
    fn malformed_extensions_are_refused() {
        let o = opts(None);
        assert_eq!(
            refusal("+1 213 555 0113 x", &o, FactorType::Call),
            "the extension after \"x\" must be 1 to 15 digits"
        );
        assert_eq!(
            refusal("+1 213 555 0113 ext. 12-3", &o, FactorType::Call),
            "the extension after \"ext.\" must be 1 to 15 digits"
        );
        assert_eq!(
            refusal("+1 213 555 0113 x1234567890123456", &o, FactorType::Call),
            "the extension has 16 digits; at most 15 are allowed"
        );
        // `x` inside a word is not taken for an extension marker.
        assert_eq!(
            refusal("+1 213 555 0113 xyz", &o, FactorType::Call),
            "the number contains letters (\"xyz\"): only digits, spaces, ( ) - . / and a \
             leading + are allowed"
        );
    }

    #[test]
    fn extension_column_values() {
        assert_eq!(normalize_extension(""), Ok(None));
        assert_eq!(normalize_extension(" 4711 "), Ok(Some("4711".to_string())));
        assert_eq!(
            normalize_extension("12a"),
            Err(PhoneError(
                "the extension must be digits only, not \"12a\"".into()
            ))
        );
        assert_eq!(
            normalize_extension("1234567890123456"),
            Err(PhoneError(
                "the extension has 16 digits; at most 15 are allowed".into()
            ))
        );
        assert_eq!(
            normalize_extension("12.0"),
            Err(PhoneError(
                "the extension ends in \".0\": the spreadsheet stored it as a decimal number; \
                 format the column as Text and re-export"
                    .into()
            ))
        );
    }

    #[test]
    fn e164_output_is_plus_and_digits() {
        for raw in [
            "+1 (213) 555-0113",
            "+44 (0)20 7946 0123",
            "+39 02 1234 5678",
        ] {
            let p = e164(raw, None);
            assert!(p.starts_with('+'), "{p}");
            assert!(p[1..].bytes().all(|b| b.is_ascii_digit()), "{p}");
        }
    }

    #[test]
    fn mask_keeps_two_digits() {
        assert_eq!(mask("+12135550113"), "+*********13");
        assert_eq!(mask("1"), "**");
    }
}
