//! From the raw command line to a validated configuration, before any file
//! or network work starts: org URL checked, token loaded, region parsed,
//! rate share understood.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

use crate::cli::{FactorTypeArg, IfMissing, InputArgs, RunArgs};
use crate::input::InputOptions;
use crate::okta::FactorType;
use crate::phone::{self, PhoneOptions};

/// A secret whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The `Authorization` header value, marked sensitive so that HTTP
    /// debugging output does not show it either.
    pub fn authorization(&self) -> reqwest::header::HeaderValue {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("SSWS {}", self.0))
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("SSWS invalid"));
        v.set_sensitive(true);
        v
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration problem: exit 2, nothing done.
#[derive(Debug)]
pub struct ConfigError {
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> ConfigError {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Whether the run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `apply`: delete and enroll; `activate` decides the new factor's state.
    Apply { activate: bool },
    /// `plan`: reads only; `activate` as `apply` would use it.
    Plan { activate: bool },
}

impl Mode {
    pub fn activate(self) -> bool {
        match self {
            Mode::Apply { activate } | Mode::Plan { activate } => activate,
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, Mode::Apply { .. })
    }
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub mode: Mode,
    pub org_url: Url,
    pub token: Secret,
    pub input_path: PathBuf,
    pub input: InputOptions,
    pub report_path: PathBuf,
    pub summary_json: Option<PathBuf>,
    pub if_missing_enroll: bool,
    pub remove_recovery: bool,
    pub also_call: bool,
    pub concurrency: usize,
    pub rate_per_minute: Option<NonZeroU32>,
    pub rate_share: f64,
    pub timeout: Duration,
    pub quiet: bool,
    pub verbose: u8,
    /// `--yes`: no confirmation prompt.
    pub assume_yes: bool,
    /// `--resume`: continue the run that wrote `report_path`.
    pub resume: bool,
}

impl RunConfig {
    pub fn factor_type(&self) -> FactorType {
        self.input.factor_type
    }
}

/// Builds the input options shared by every command that reads the CSV.
pub fn input_options(args: &InputArgs) -> Result<InputOptions, ConfigError> {
    let default_region = args
        .default_region
        .as_deref()
        .map(phone::parse_region)
        .transpose()
        .map_err(ConfigError::new)?;
    Ok(InputOptions {
        user_column: args.user_column.clone(),
        phone_column: args.phone_column.clone(),
        phone: PhoneOptions {
            default_region,
            allow_unknown_ranges: args.allow_unknown_ranges,
        },
        factor_type: match args.factor_type {
            FactorTypeArg::Sms => FactorType::Sms,
            FactorTypeArg::Call => FactorType::Call,
        },
    })
}

/// Validates `apply`/`plan` options. `env` is the process environment,
/// passed in so tests need not touch the real one.
pub fn run_config(
    args: &RunArgs,
    mode: Mode,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RunConfig, ConfigError> {
    let org = args.org_url.clone().ok_or_else(|| {
        ConfigError::new("no Okta org given").hint(
            "pass --org-url https://YOUR-ORG.okta.com or set OKTA_CLIENT_ORGURL; there is no default",
        )
    })?;
    let org_url = parse_org_url(&org)?;
    let token = load_token(args.token_file.as_deref(), env)?;
    let input = input_options(&args.input)?;
    let rate_share = parse_share(&args.rate_share)?;
    let report_path = args.report.clone().unwrap_or_else(default_report_path);
    Ok(RunConfig {
        mode,
        org_url,
        token,
        input_path: args.input.input.clone(),
        input,
        report_path,
        summary_json: args.summary_json.clone(),
        if_missing_enroll: args.if_missing == IfMissing::Enroll,
        remove_recovery: args.remove_recovery,
        also_call: args.also_call,
        concurrency: usize::from(args.concurrency),
        rate_per_minute: args.rate.and_then(NonZeroU32::new),
        rate_share,
        timeout: Duration::from_secs(args.timeout.max(1)),
        quiet: args.output.quiet,
        verbose: args.output.verbose,
        assume_yes: false,
        resume: false,
    })
}

/// `okta-phone-migrate-report-20261204T155500Z.csv` in the working directory.
pub fn default_report_path() -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    PathBuf::from(format!("okta-phone-migrate-report-{stamp}.csv"))
}

/// Checks an org URL: https, or http on loopback only; no path.
pub fn parse_org_url(raw: &str) -> Result<Url, ConfigError> {
    let trimmed = raw.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| {
        ConfigError::new(format!("--org-url {trimmed:?} is not a URL: {e}"))
            .hint("use the form https://acme.okta.com")
    })?;
    let host = url.host_str().unwrap_or_default().to_string();
    let loopback = matches!(host.as_str(), "127.0.0.1" | "[::1]" | "localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(ConfigError::new(format!(
                "refusing http:// for {host}: the token would travel unencrypted"
            ))
            .hint("use https://; plain http is allowed only for 127.0.0.1, [::1] and localhost"));
        }
        other => {
            return Err(ConfigError::new(format!(
                "unsupported URL scheme {other:?} in --org-url"
            )));
        }
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(ConfigError::new(format!(
            "--org-url must be the org's base URL without a path, not {trimmed:?}"
        ))
        .hint("e.g. https://acme.okta.com"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new(
            "--org-url must not carry a query, fragment or credentials",
        ));
    }
    if host.contains("-admin.") {
        return Err(ConfigError::new(format!(
            "{host} is the Admin Console host; the API lives on the org host"
        ))
        .hint(format!("use {}", host.replacen("-admin.", ".", 1))));
    }
    Ok(url)
}

fn load_token(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let (raw, source) = if let Some(path) = file {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("cannot read --token-file {}: {e}", path.display()))
        })?;
        (text, format!("--token-file {}", path.display()))
    } else if let Some(v) = env("OKTA_CLIENT_TOKEN").filter(|v| !v.trim().is_empty()) {
        (v, "OKTA_CLIENT_TOKEN".to_string())
    } else if let Some(v) = env("OKTA_API_TOKEN").filter(|v| !v.trim().is_empty()) {
        (v, "OKTA_API_TOKEN".to_string())
    } else {
        return Err(ConfigError::new("no API token").hint(
            "put it in a file readable only by you and pass --token-file, or set OKTA_CLIENT_TOKEN",
        ));
    };
    let token = raw.trim();
    let token = token.strip_prefix("SSWS ").unwrap_or(token).trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(format!(
            "the token from {source} is empty or contains spaces or line breaks"
        )));
    }
    Ok(Secret::new(token.to_string()))
}

/// A secret file readable by others is refused, with the fix.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        ConfigError::new(format!("cannot read --token-file {}: {e}", path.display()))
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ConfigError::new(format!(
            "{} is readable by other users; a token file must be private",
            path.display()
        ))
        .hint(format!("chmod 600 {}", path.display())));
    }
    Ok(())
}

// Limitation: on Windows the token file's permissions are not checked.
#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// `50%`, `0.5` or `1` → a fraction in (0, 1].
pub fn parse_share(raw: &str) -> Result<f64, ConfigError> {
    let s = raw.trim();
    let value = if let Some(pct) = s.strip_suffix('%') {
        pct.trim().parse::<f64>().map(|p| p / 100.0)
    } else {
        s.parse::<f64>()
    };
    match value {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(ConfigError::new(format!(
            "--rate-share {raw:?} must be a share above 0 and at most 100%, like 50% or 0.5"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_url_rules() {
        assert!(parse_org_url("https://acme.okta.com/").is_ok());
        assert!(parse_org_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_org_url("http://[::1]:8080").is_ok());
        assert!(parse_org_url("http://localhost:1").is_ok());
        assert!(parse_org_url("http://acme.okta.com").is_err());
        assert!(parse_org_url("https://acme.okta.com/api/v1").is_err());
        let admin = parse_org_url("https://acme-admin.okta.com").unwrap_err();
        assert_eq!(admin.hint.as_deref(), Some("use acme.okta.com"));
        assert!(parse_org_url("acme.okta.com").is_err());
    }

    #[test]
    fn share_parsing() {
        assert_eq!(parse_share("50%").unwrap(), 0.5);
        assert_eq!(parse_share("0.25").unwrap(), 0.25);
        assert_eq!(parse_share("100%").unwrap(), 1.0);
        assert!(parse_share("0").is_err());
        assert!(parse_share("150%").is_err());
        assert!(parse_share("half").is_err());
    }

    #[test]
    fn token_precedence_and_redaction() {
        let env = |k: &str| match k {
            "OKTA_CLIENT_TOKEN" => Some("client-tok".to_string()),
            "OKTA_API_TOKEN" => Some("api-tok".to_string()),
            _ => None,
        };
        let t = load_token(None, &env).unwrap();
        assert_eq!(t, Secret::new("client-tok".into()));
        assert_eq!(format!("{t:?}"), "Secret(***)");
        let only_api = |k: &str| (k == "OKTA_API_TOKEN").then(|| "SSWS api-tok\n".to_string());
        assert_eq!(
            load_token(None, &only_api).unwrap(),
            Secret::new("api-tok".into())
        );
        assert!(load_token(None, &|_| None).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn token_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-value\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_token(Some(&path), &|_| None).unwrap_err();
        assert!(err.hint.unwrap().starts_with("chmod 600"));
        assert!(!err.message.contains("secret-value"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_token(Some(&path), &|_| None).unwrap(),
            Secret::new("secret-value".into())
        );
    }
}
