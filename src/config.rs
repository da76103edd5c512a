//! From the raw command line to a validated configuration, before any file
//! or network work starts: org URL checked, credentials loaded, region
//! parsed, rate share understood.
//!
//! Each setting is taken from the first of: its flag, its environment
//! variable, `--config`, `./.okta.yaml` or `./okta.yaml`, `~/.okta/okta.yaml`,
//! the default
//! ([`crate::settings`] reads the files). [`Effective`] keeps where every
//! value came from, for `config show` and for messages.

use std::collections::HashSet;
use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::cli::{
    FactorTypeArg, IfMissing, InputArgs, LogFormatArg, OktaArgs, OutputArgs, PlanFormat, RunArgs,
    SelectionArgs, TuningArgs,
};
use crate::input::InputOptions;
use crate::okta::FactorType;
use crate::okta::auth::{ClientKey, Credentials, OAuthSettings, SCOPE_MANAGE, SCOPE_READ};
use crate::phone::{self, PhoneOptions};
use crate::settings::{self, Found, LoadedTool, OktaFile, Scopes, Source};

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

impl Secret {
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// For `config show`: the length and nothing else.
    pub fn masked(&self) -> String {
        "******** (hidden)".to_string()
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
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ConfigError {
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
    pub credentials: Credentials,
    /// Extra trusted roots from `--ca-file`.
    pub extra_roots: Vec<reqwest::Certificate>,
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
    /// Which rows to work on (`--limit`, `--rows`, `--only-users`).
    pub selection: Selection,
    /// `--max-failures`: the circuit breaker.
    pub max_failures: Option<FailureLimit>,
    /// `--update-profile`: also set `profile.mobilePhone`.
    pub update_profile: bool,
    /// `plan`'s stdout.
    pub plan_format: PlanFormat,
    /// Without a terminal, a progress line this often.
    pub progress_interval: Duration,
}

/// The rows a run works on; the others end `not_selected`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub first: u64,
    pub last: Option<u64>,
    /// Users as written in the CSV, lower-cased.
    pub users: Option<Arc<HashSet<String>>>,
}

impl Selection {
    pub fn is_all(&self) -> bool {
        self.first <= 1 && self.last.is_none() && self.users.is_none()
    }

    pub fn selects(&self, row: u64, user_as_written: &str) -> bool {
        row >= self.first
            && self.last.is_none_or(|l| row <= l)
            && self
                .users
                .as_ref()
                .is_none_or(|u| u.contains(&user_as_written.trim().to_lowercase()))
    }

    /// For messages: `rows 1-20`, `users from FILE`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match (self.first, self.last) {
            (f, Some(l)) => parts.push(format!("rows {f}-{l}")),
            (f, None) if f > 1 => parts.push(format!("rows {f}-end")),
            _ => {}
        }
        if let Some(u) = &self.users {
            parts.push(format!("{} listed users", u.len()));
        }
        if parts.is_empty() {
            "all rows".into()
        } else {
            parts.join(", ")
        }
    }
}

/// When the circuit breaker stops a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureLimit {
    /// Once this many rows have failed.
    Count(u64),
    /// Once more than this share of the attempted rows have failed,
    /// judged after [`FailureLimit::MIN_ATTEMPTED`] rows.
    Share(f64),
}

impl FailureLimit {
    pub const MIN_ATTEMPTED: u64 = 20;

    pub fn parse(raw: &str) -> Result<FailureLimit, ConfigError> {
        let s = raw.trim();
        let bad = || {
            ConfigError::new(format!(
                "--max-failures {raw:?} must be a count (like 25) or a share of the attempted rows (like 10%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if p > 0.0 && p <= 100.0 {
                return Ok(FailureLimit::Share(p / 100.0));
            }
            return Err(bad());
        }
        match s.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(FailureLimit::Count(n)),
            _ => Err(bad()),
        }
    }

    /// Whether `failed` of `attempted` rows trips the breaker.
    pub fn tripped(self, failed: u64, attempted: u64) -> bool {
        match self {
            FailureLimit::Count(n) => failed >= n,
            FailureLimit::Share(p) => {
                attempted >= Self::MIN_ATTEMPTED && (failed as f64) > p * attempted as f64
            }
        }
    }
}

impl fmt::Display for FailureLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureLimit::Count(n) => write!(f, "{n}"),
            FailureLimit::Share(p) => write!(f, "{}%", p * 100.0),
        }
    }
}

impl RunConfig {
    pub fn factor_type(&self) -> FactorType {
        self.input.factor_type
    }
}

/// Builds the input options shared by every command that reads the CSV,
/// from the flags alone (`validate`).
pub fn input_options(args: &InputArgs) -> Result<InputOptions, ConfigError> {
    let factor_type = match args.factor_type {
        Some(FactorTypeArg::Call) => FactorType::Call,
        _ => FactorType::Sms,
    };
    input_options_with(args, args.default_region.as_deref(), factor_type)
}

/// `validate`'s input options: the region and factor type may come from
/// the environment or `--config` too (no okta.yaml, no credentials).
pub fn validate_options(args: &InputArgs, ctx: &Context<'_>) -> Result<InputOptions, ConfigError> {
    let region = first([
        flag(args.default_region.clone(), "--default-region"),
        ctx.var("OKTA_PHONE_MIGRATE_DEFAULT_REGION"),
        ctx.tool(|t| t.default_region.clone()),
    ]);
    let factor_type = match args.factor_type {
        Some(FactorTypeArg::Call) => FactorType::Call,
        Some(FactorTypeArg::Sms) => FactorType::Sms,
        None => match first([
            ctx.var("OKTA_PHONE_MIGRATE_FACTOR_TYPE"),
            ctx.tool(|t| t.factor_type.clone()),
        ]) {
            Some(f) => f
                .value
                .parse()
                .map_err(|e| ConfigError::new(format!("{e} (from {})", f.source)))?,
            None => FactorType::Sms,
        },
    };
    input_options_with(args, region.as_ref().map(|r| r.value.as_str()), factor_type)
}

fn input_options_with(
    args: &InputArgs,
    default_region: Option<&str>,
    factor_type: FactorType,
) -> Result<InputOptions, ConfigError> {
    let default_region = default_region
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
        factor_type,
    })
}

/// Where settings are read from besides the flags.
pub struct Context<'a> {
    /// The process environment (a closure, so tests need not touch the
    /// real one).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `~`, for `~/.okta/okta.yaml`.
    pub home: Option<PathBuf>,
    /// The working directory, for `./.okta.yaml`.
    pub cwd: PathBuf,
    /// `--config` (or `OKTA_PHONE_MIGRATE_CONFIG`), read.
    pub tool: Option<LoadedTool>,
}

impl<'a> Context<'a> {
    /// The context of this process: `$HOME`, the working directory, and
    /// `--config` or `OKTA_PHONE_MIGRATE_CONFIG` when given.
    pub fn new(
        env: &'a dyn Fn(&str) -> Option<String>,
        config: Option<&Path>,
    ) -> Result<Context<'a>, ConfigError> {
        let home = env("HOME")
            .or_else(|| env("USERPROFILE"))
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let cwd = std::env::current_dir().unwrap_or_default();
        let config = config
            .map(Path::to_path_buf)
            .or_else(|| env("OKTA_PHONE_MIGRATE_CONFIG").map(PathBuf::from));
        let tool = config
            .as_deref()
            .map(settings::load_tool_file)
            .transpose()?;
        Ok(Context {
            env,
            home,
            cwd,
            tool,
        })
    }

    fn var(&self, key: &str) -> Option<Found<String>> {
        (self.env)(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| Found::new(v, Source::Env(key.to_string())))
    }

    fn tool<T>(&self, get: impl Fn(&settings::ToolFile) -> Option<T>) -> Option<Found<T>> {
        let t = self.tool.as_ref()?;
        get(&t.file).map(|v| Found::new(v, Source::File(t.path.clone())))
    }
}

/// A secret as configured, before it is read.
#[derive(Debug, Clone)]
pub enum SecretSource {
    File(PathBuf),
    Value(Secret),
}

/// Every setting with where it came from: what `config show` prints and
/// what [`run_config`] validates.
#[derive(Debug, Clone)]
pub struct Effective {
    pub org_url: Option<Found<String>>,
    pub authorization_mode: Option<Found<String>>,
    pub token: Option<Found<SecretSource>>,
    pub client_id: Option<Found<String>>,
    pub private_key: Option<Found<SecretSource>>,
    pub key_id: Option<Found<String>>,
    pub scopes: Option<Found<Vec<String>>>,
    pub ca_file: Option<Found<PathBuf>>,
    pub concurrency: Found<u16>,
    pub rate: Option<Found<u32>>,
    pub rate_share: Found<String>,
    pub timeout: Found<u64>,
    pub default_region: Option<Found<String>>,
    pub factor_type: Found<FactorType>,
    pub max_failures: Option<Found<String>>,
    /// The okta.yaml files that were read, highest precedence first.
    pub okta_files: Vec<PathBuf>,
    pub tool_file: Option<PathBuf>,
}

fn first<T>(candidates: impl IntoIterator<Item = Option<Found<T>>>) -> Option<Found<T>> {
    candidates.into_iter().flatten().next()
}

fn flag<T>(value: Option<T>, name: &'static str) -> Option<Found<T>> {
    value.map(|v| Found::new(v, Source::Flag(name)))
}

fn from_okta<T>(
    files: &[OktaFile],
    get: impl Fn(&settings::OktaClientYaml) -> Option<T>,
) -> Option<Found<T>> {
    files
        .iter()
        .find_map(|f| get(&f.client).map(|v| Found::new(v, Source::File(f.path.clone()))))
}

fn parse_found<T: std::str::FromStr>(
    f: Option<Found<String>>,
    what: &str,
) -> Result<Option<Found<T>>, ConfigError> {
    f.map(|f| match f.value.trim().parse::<T>() {
        Ok(v) => Ok(Found::new(v, f.source)),
        Err(_) => Err(ConfigError::new(format!(
            "{what} {:?} (from {}) is not valid",
            f.value, f.source
        ))),
    })
    .transpose()
}

/// A private key setting: inline PEM/JWK text, or a path to a file.
fn key_source(text: String) -> SecretSource {
    let t = text.trim_start();
    if t.starts_with("-----BEGIN") || t.starts_with('{') {
        SecretSource::Value(Secret::new(text))
    } else {
        SecretSource::File(PathBuf::from(text.trim()))
    }
}

/// Resolves every setting from flags, environment and files.
pub fn effective(
    okta: &OktaArgs,
    tuning: &TuningArgs,
    default_region: Option<&str>,
    factor_type: Option<FactorTypeArg>,
    max_failures: Option<&str>,
    ctx: &Context<'_>,
) -> Result<Effective, ConfigError> {
    let paths = settings::okta_yaml_paths(ctx.home.as_deref(), &ctx.cwd);
    let files = settings::load_okta_files(&paths)?;
    let s = |v: &Option<String>| v.clone().filter(|x| !x.trim().is_empty());

    let org_url = first([
        flag(okta.org_url.clone(), "--org-url"),
        ctx.var("OKTA_CLIENT_ORGURL"),
        ctx.tool(|t| s(&t.org_url)),
        from_okta(&files, |c| s(&c.org_url)),
    ]);
    let authorization_mode = first([
        flag(okta.authorization_mode.clone(), "--authorization-mode"),
        ctx.var("OKTA_CLIENT_AUTHORIZATIONMODE"),
        ctx.tool(|t| s(&t.authorization_mode)),
        from_okta(&files, |c| s(&c.authorization_mode)),
    ]);
    let token = first([
        flag(
            okta.token_file.clone().map(SecretSource::File),
            "--token-file",
        ),
        ctx.var("OKTA_CLIENT_TOKEN")
            .map(|f| Found::new(SecretSource::Value(Secret::new(f.value)), f.source)),
        ctx.var("OKTA_API_TOKEN")
            .map(|f| Found::new(SecretSource::Value(Secret::new(f.value)), f.source)),
        ctx.tool(|t| t.token_file.clone().map(SecretSource::File)),
        from_okta(&files, |c| {
            s(&c.token).map(|t| SecretSource::Value(Secret::new(t)))
        }),
    ]);
    let client_id = first([
        flag(okta.client_id.clone(), "--client-id"),
        ctx.var("OKTA_CLIENT_CLIENTID"),
        ctx.tool(|t| s(&t.client_id)),
        from_okta(&files, |c| s(&c.client_id)),
    ]);
    let private_key = first([
        flag(
            okta.private_key.clone().map(SecretSource::File),
            "--private-key",
        ),
        ctx.var("OKTA_CLIENT_PRIVATEKEY")
            .map(|f| Found::new(key_source(f.value), f.source)),
        ctx.tool(|t| t.private_key.clone().map(SecretSource::File)),
        from_okta(&files, |c| s(&c.private_key).map(key_source)),
    ]);
    let key_id = first([
        flag(okta.key_id.clone(), "--key-id"),
        ctx.var("OKTA_CLIENT_PRIVATEKEYID"),
        ctx.tool(|t| s(&t.key_id)),
        from_okta(&files, |c| s(&c.private_key_id)),
    ]);
    let scopes = first([
        flag(
            okta.scopes.as_deref().map(|x| Scopes::parse(x).0),
            "--scopes",
        ),
        ctx.var("OKTA_CLIENT_SCOPES")
            .map(|f| Found::new(Scopes::parse(&f.value).0, f.source)),
        ctx.tool(|t| t.scopes.clone().map(|x| x.0)),
        from_okta(&files, |c| c.scopes.clone().map(|x| x.0)),
    ])
    .filter(|f| !f.value.is_empty());
    let ca_file = first([
        flag(okta.ca_file.clone(), "--ca-file"),
        ctx.var("OKTA_PHONE_MIGRATE_CA_FILE")
            .map(|f| Found::new(PathBuf::from(f.value), f.source)),
        ctx.tool(|t| t.ca_file.clone()),
    ]);

    let concurrency = first([
        flag(tuning.concurrency, "--concurrency"),
        parse_found(ctx.var("OKTA_PHONE_MIGRATE_CONCURRENCY"), "the concurrency")?,
        ctx.tool(|t| t.concurrency),
    ])
    .unwrap_or(Found::new(8, Source::Default));
    if !(1..=64).contains(&concurrency.value) {
        return Err(ConfigError::new(format!(
            "concurrency {} (from {}) must be 1 to 64",
            concurrency.value, concurrency.source
        )));
    }
    let rate = first([
        flag(tuning.rate, "--rate"),
        parse_found(ctx.var("OKTA_PHONE_MIGRATE_RATE"), "the rate")?,
        ctx.tool(|t| t.rate),
    ]);
    let rate_share = first([
        flag(tuning.rate_share.clone(), "--rate-share"),
        ctx.var("OKTA_PHONE_MIGRATE_RATE_SHARE"),
        ctx.tool(|t| t.rate_share.clone().map(|x| x.0)),
    ])
    .unwrap_or(Found::new("50%".into(), Source::Default));
    let timeout = first([
        flag(tuning.timeout, "--timeout"),
        parse_found(ctx.var("OKTA_PHONE_MIGRATE_TIMEOUT"), "the timeout")?,
        ctx.tool(|t| t.timeout),
    ])
    .unwrap_or(Found::new(30, Source::Default));
    let default_region = first([
        flag(default_region.map(str::to_string), "--default-region"),
        ctx.var("OKTA_PHONE_MIGRATE_DEFAULT_REGION"),
        ctx.tool(|t| s(&t.default_region)),
    ]);
    let factor_type = match first([
        flag(
            factor_type.map(|f| match f {
                FactorTypeArg::Sms => "sms".to_string(),
                FactorTypeArg::Call => "call".to_string(),
            }),
            "--factor-type",
        ),
        ctx.var("OKTA_PHONE_MIGRATE_FACTOR_TYPE"),
        ctx.tool(|t| s(&t.factor_type)),
    ]) {
        Some(f) => Found::new(
            f.value
                .parse::<FactorType>()
                .map_err(|e| ConfigError::new(format!("{e} (from {})", f.source)))?,
            f.source,
        ),
        None => Found::new(FactorType::Sms, Source::Default),
    };
    let max_failures = first([
        flag(max_failures.map(str::to_string), "--max-failures"),
        ctx.var("OKTA_PHONE_MIGRATE_MAX_FAILURES"),
        ctx.tool(|t| t.max_failures.clone().map(|x| x.0)),
    ]);
    Ok(Effective {
        org_url,
        authorization_mode,
        token,
        client_id,
        private_key,
        key_id,
        scopes,
        ca_file,
        concurrency,
        rate,
        rate_share,
        timeout,
        default_region,
        factor_type,
        max_failures,
        okta_files: files.iter().map(|f| f.path.clone()).collect(),
        tool_file: ctx.tool.as_ref().map(|t| t.path.clone()),
    })
}

/// The sign-in method the settings choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Ssws,
    PrivateKey,
}

impl Effective {
    /// SSWS or PrivateKey: as set, else SSWS when a token is configured,
    /// else PrivateKey when a client id is.
    pub fn auth_mode(&self) -> Result<AuthMode, ConfigError> {
        if let Some(m) = &self.authorization_mode {
            let norm: String = m
                .value
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            return match norm.as_str() {
                "ssws" => Ok(AuthMode::Ssws),
                "privatekey" => Ok(AuthMode::PrivateKey),
                _ => Err(ConfigError::new(format!(
                    "authorization mode {:?} (from {}) is not supported",
                    m.value, m.source
                ))
                .hint("use SSWS (an API token) or PrivateKey (an OAuth service app with a private key)")),
            };
        }
        if self.token.is_some() {
            Ok(AuthMode::Ssws)
        } else if self.client_id.is_some() {
            Ok(AuthMode::PrivateKey)
        } else {
            Err(ConfigError::new("no credentials: neither an API token nor an OAuth app is configured").hint(
                "put an API token in a file readable only by you and pass --token-file (or set OKTA_CLIENT_TOKEN), or configure an OAuth service app with --client-id and --private-key (or in ~/.okta/okta.yaml)",
            ))
        }
    }

    /// The scopes a command asks for: as configured, else its default.
    pub fn scopes_for(&self, mode: Mode) -> Found<Vec<String>> {
        self.scopes.clone().unwrap_or_else(|| {
            let s = if mode.writes() {
                SCOPE_MANAGE
            } else {
                SCOPE_READ
            };
            Found::new(vec![s.to_string()], Source::Default)
        })
    }

    /// Reads and checks the credentials.
    pub fn credentials(&self, mode: Mode) -> Result<Credentials, ConfigError> {
        match self.auth_mode()? {
            AuthMode::Ssws => {
                let t = self.token.as_ref().ok_or_else(|| {
                    ConfigError::new("authorization mode SSWS but no API token is configured").hint(
                        "pass --token-file FILE (mode 0600), or set OKTA_CLIENT_TOKEN, or token in okta.yaml",
                    )
                })?;
                Ok(Credentials::Ssws(read_token(t)?))
            }
            AuthMode::PrivateKey => {
                let client_id = self.client_id.as_ref().ok_or_else(|| {
                    ConfigError::new(
                        "authorization mode PrivateKey needs the OAuth app's client id",
                    )
                    .hint("pass --client-id, set OKTA_CLIENT_CLIENTID, or clientId in okta.yaml")
                })?;
                let key = self.private_key.as_ref().ok_or_else(|| {
                    ConfigError::new("authorization mode PrivateKey needs the app's private key").hint(
                        "pass --private-key FILE (PEM or JWK, mode 0600), set OKTA_CLIENT_PRIVATEKEY, or privateKey in okta.yaml",
                    )
                })?;
                let key = read_key(key)?.with_kid(self.key_id.as_ref().map(|k| k.value.clone()));
                let scopes = self.scopes_for(mode);
                let has = |s: &str| scopes.value.iter().any(|x| x == s);
                if mode.writes() && !has(SCOPE_MANAGE) {
                    return Err(ConfigError::new(format!(
                        "the scopes from {} ({}) lack {SCOPE_MANAGE}, which apply needs",
                        scopes.source,
                        scopes.value.join(" ")
                    ))
                    .hint(format!(
                        "pass --scopes {SCOPE_MANAGE} (the app must be granted it)"
                    )));
                }
                if !mode.writes() && !has(SCOPE_READ) && !has(SCOPE_MANAGE) {
                    return Err(ConfigError::new(format!(
                        "the scopes from {} ({}) lack {SCOPE_READ}, which plan needs",
                        scopes.source,
                        scopes.value.join(" ")
                    ))
                    .hint(format!("pass --scopes {SCOPE_READ}")));
                }
                Ok(Credentials::PrivateKey(OAuthSettings {
                    client_id: client_id.value.trim().to_string(),
                    key,
                    scopes: scopes.value,
                }))
            }
        }
    }

    /// The extra roots of `--ca-file`.
    pub fn extra_roots(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        let Some(f) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let bytes = std::fs::read(&f.value).map_err(|e| {
            ConfigError::new(format!(
                "cannot read the CA file {} (from {}): {e}",
                f.value.display(),
                f.source
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|e| {
            ConfigError::new(format!(
                "the CA file {} is not a PEM bundle: {e}",
                f.value.display()
            ))
        })?;
        if certs.is_empty()
            || !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(ConfigError::new(format!(
                "the CA file {} holds no PEM certificate",
                f.value.display()
            ))
            .hint("export the proxy's root CA as PEM (-----BEGIN CERTIFICATE-----)"));
        }
        Ok(certs)
    }
}

fn read_token(t: &Found<SecretSource>) -> Result<Secret, ConfigError> {
    let raw = match &t.value {
        SecretSource::File(path) => {
            settings::check_private(path, "it holds the API token")?;
            std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!(
                    "cannot read the token file {}: {e}",
                    path.display()
                ))
            })?
        }
        SecretSource::Value(s) => s.expose().to_string(),
    };
    let token = raw.trim();
    let token = token.strip_prefix("SSWS ").unwrap_or(token).trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(format!(
            "the token from {} is empty or contains spaces or line breaks",
            t.source
        )));
    }
    Ok(Secret::new(token.to_string()))
}

fn read_key(k: &Found<SecretSource>) -> Result<ClientKey, ConfigError> {
    match &k.value {
        SecretSource::File(path) => {
            settings::check_private(path, "it holds the private key")?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(format!(
                    "cannot read the private key {} (from {}): {e}",
                    path.display(),
                    k.source
                ))
            })?;
            ClientKey::parse(&text)
                .map_err(|e| ConfigError::new(format!("the private key {}: {e}", path.display())))
        }
        SecretSource::Value(s) => ClientKey::parse(s.expose())
            .map_err(|e| ConfigError::new(format!("the private key from {}: {e}", k.source))),
    }
}

/// How the log is written, from flags, environment and `--config`.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub quiet: bool,
    pub verbose: u8,
    pub format: LogFormatArg,
    pub file: Option<PathBuf>,
    pub progress_interval: Duration,
}

pub fn log_settings(output: &OutputArgs, ctx: &Context<'_>) -> Result<LogSettings, ConfigError> {
    let format = match first([
        flag(
            output.log_format.map(|f| match f {
                LogFormatArg::Human => "human".to_string(),
                LogFormatArg::Json => "json".to_string(),
            }),
            "--log-format",
        ),
        ctx.var("OKTA_PHONE_MIGRATE_LOG_FORMAT"),
        ctx.tool(|t| t.log_format.clone()),
    ]) {
        None => LogFormatArg::Human,
        Some(f) => match f.value.to_ascii_lowercase().as_str() {
            "human" | "text" => LogFormatArg::Human,
            "json" => LogFormatArg::Json,
            other => {
                return Err(ConfigError::new(format!(
                    "log format {other:?} (from {}) must be human or json",
                    f.source
                )));
            }
        },
    };
    let file = first([
        flag(output.log_file.clone(), "--log-file"),
        ctx.var("OKTA_PHONE_MIGRATE_LOG_FILE")
            .map(|f| Found::new(PathBuf::from(f.value), f.source)),
        ctx.tool(|t| t.log_file.clone()),
    ])
    .map(|f| f.value);
    let every = first([
        flag(output.progress_interval, "--progress-interval"),
        parse_found(
            ctx.var("OKTA_PHONE_MIGRATE_PROGRESS_INTERVAL"),
            "the progress interval",
        )?,
        ctx.tool(|t| t.progress_interval),
    ])
    .map_or(5, |f| f.value.max(1));
    Ok(LogSettings {
        quiet: output.quiet,
        verbose: output.verbose,
        format,
        file,
        progress_interval: Duration::from_secs(every),
    })
}

/// Validates `apply`/`plan` options.
pub fn run_config(args: &RunArgs, mode: Mode, ctx: &Context<'_>) -> Result<RunConfig, ConfigError> {
    let eff = effective(
        &args.okta,
        &args.tuning,
        args.input.default_region.as_deref(),
        args.input.factor_type,
        args.max_failures.as_deref(),
        ctx,
    )?;
    let org = eff.org_url.as_ref().ok_or_else(|| {
        ConfigError::new("no Okta org given").hint(
            "pass --org-url https://YOUR-ORG.okta.com or set OKTA_CLIENT_ORGURL (or orgUrl in okta.yaml); there is no default",
        )
    })?;
    let org_url = parse_org_url(&org.value)?;
    let credentials = eff.credentials(mode)?;
    let extra_roots = eff.extra_roots()?;
    let input = input_options_with(
        &args.input,
        eff.default_region.as_ref().map(|r| r.value.as_str()),
        eff.factor_type.value,
    )?;
    let rate_share = parse_share(&eff.rate_share.value)?;
    let max_failures = eff
        .max_failures
        .as_ref()
        .map(|f| FailureLimit::parse(&f.value))
        .transpose()?;
    let selection = selection(&args.selection)?;
    let log = log_settings(&args.output, ctx)?;
    let report_path = args.report.clone().unwrap_or_else(default_report_path);
    Ok(RunConfig {
        mode,
        org_url,
        credentials,
        extra_roots,
        input_path: args.input.input.clone(),
        input,
        report_path,
        summary_json: args.summary_json.clone(),
        if_missing_enroll: args.if_missing == IfMissing::Enroll,
        remove_recovery: args.remove_recovery,
        also_call: args.also_call,
        concurrency: usize::from(eff.concurrency.value),
        rate_per_minute: eff.rate.as_ref().and_then(|r| NonZeroU32::new(r.value)),
        rate_share,
        timeout: Duration::from_secs(eff.timeout.value.max(1)),
        quiet: args.output.quiet,
        verbose: args.output.verbose,
        assume_yes: false,
        resume: false,
        selection,
        max_failures,
        update_profile: args.update_profile,
        plan_format: PlanFormat::Text,
        progress_interval: log.progress_interval,
    })
}

/// `--limit`, `--rows`, `--only-users` → the rows to work on.
pub fn selection(args: &SelectionArgs) -> Result<Selection, ConfigError> {
    let mut sel = Selection {
        first: 1,
        last: args.limit,
        users: None,
    };
    if let Some(raw) = &args.rows {
        let bad = || {
            ConfigError::new(format!(
                "--rows {raw:?} must be FIRST-LAST, 1-based and inclusive, like 10-50"
            ))
        };
        let (a, b) = raw.split_once('-').ok_or_else(bad)?;
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        if a == 0 || b < a {
            return Err(bad());
        }
        sel.first = a;
        sel.last = Some(sel.last.map_or(b, |l| l.min(b)));
    }
    if let Some(path) = &args.only_users {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("cannot read --only-users {}: {e}", path.display()))
        })?;
        let users: HashSet<String> = text
            .lines()
            .map(|l| l.trim().trim_start_matches('\u{feff}').trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_lowercase)
            .collect();
        if users.is_empty() {
            return Err(ConfigError::new(format!(
                "--only-users {} lists no user",
                path.display()
            )));
        }
        sel.users = Some(Arc::new(users));
    }
    Ok(sel)
}

/// `config show`: every setting, its value (secrets masked) and its
/// source; and whether a run could start with them (org URL and
/// credentials usable), so the command doubles as a preflight check.
pub fn show(eff: &Effective, mode: Mode, log: &LogSettings) -> (String, bool) {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut put = |name: &str, value: String, source: String| {
        rows.push((name.to_string(), value, source));
    };
    let opt = |f: &Option<Found<String>>| match f {
        Some(f) => (f.value.clone(), f.source.to_string()),
        None => ("(not set)".to_string(), String::new()),
    };
    let (v, s) = opt(&eff.org_url);
    put("org_url", v, s);
    let auth = eff.auth_mode();
    put(
        "authorization_mode",
        match &auth {
            Ok(AuthMode::Ssws) => "SSWS".into(),
            Ok(AuthMode::PrivateKey) => "PrivateKey".into(),
            Err(e) => format!("(invalid: {e})"),
        },
        eff.authorization_mode
            .as_ref()
            .map_or("derived".to_string(), |f| f.source.to_string()),
    );
    let secret = |f: &Option<Found<SecretSource>>| match f {
        Some(Found {
            value: SecretSource::File(p),
            source,
        }) => (
            format!("file {} (content hidden)", p.display()),
            source.to_string(),
        ),
        Some(Found {
            value: SecretSource::Value(s),
            source,
        }) => (s.masked(), source.to_string()),
        None => ("(not set)".to_string(), String::new()),
    };
    let (v, s) = secret(&eff.token);
    put("token", v, s);
    let (v, s) = opt(&eff.client_id);
    put("client_id", v, s);
    let (v, s) = secret(&eff.private_key);
    put("private_key", v, s);
    let (v, s) = opt(&eff.key_id);
    put("key_id", v, s);
    let scopes = eff.scopes_for(mode);
    put("scopes", scopes.value.join(" "), scopes.source.to_string());
    match &eff.ca_file {
        Some(f) => put(
            "ca_file",
            f.value.display().to_string(),
            f.source.to_string(),
        ),
        None => put("ca_file", "(system roots only)".into(), String::new()),
    }
    put(
        "concurrency",
        eff.concurrency.value.to_string(),
        eff.concurrency.source.to_string(),
    );
    match &eff.rate {
        Some(r) => put("rate", format!("{}/min", r.value), r.source.to_string()),
        None => put("rate", "(no cap)".into(), "default".into()),
    }
    put(
        "rate_share",
        eff.rate_share.value.clone(),
        eff.rate_share.source.to_string(),
    );
    put(
        "timeout",
        format!("{}s", eff.timeout.value),
        eff.timeout.source.to_string(),
    );
    let (v, s) = opt(&eff.default_region);
    put("default_region", v, s);
    put(
        "factor_type",
        eff.factor_type.value.to_string(),
        eff.factor_type.source.to_string(),
    );
    match &eff.max_failures {
        Some(f) => put("max_failures", f.value.clone(), f.source.to_string()),
        None => put("max_failures", "(never stop)".into(), "default".into()),
    }
    put(
        "log_format",
        match log.format {
            LogFormatArg::Human => "human".into(),
            LogFormatArg::Json => "json".into(),
        },
        String::new(),
    );
    put(
        "log_file",
        log.file
            .as_ref()
            .map_or("(stderr)".to_string(), |p| p.display().to_string()),
        String::new(),
    );
    put(
        "progress_interval",
        format!("{}s", log.progress_interval.as_secs()),
        String::new(),
    );
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let vwidth = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = String::new();
    for (n, v, s) in rows {
        let line = if s.is_empty() {
            format!("{n:<width$}  {v}")
        } else {
            format!("{n:<width$}  {v:<vwidth$}  ({s})")
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let files: Vec<String> = eff
        .tool_file
        .iter()
        .chain(eff.okta_files.iter())
        .map(|p| p.display().to_string())
        .collect();
    out.push_str(&format!(
        "\nfiles read: {}\n",
        if files.is_empty() {
            "(none)".to_string()
        } else {
            files.join(", ")
        }
    ));
    let mut ok = true;
    match eff.org_url.as_ref().map(|o| parse_org_url(&o.value)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            ok = false;
            out.push_str(&format!("org_url: NOT USABLE: {e}\n"));
        }
        None => {
            ok = false;
            out.push_str(
                "org_url: NOT SET (--org-url, OKTA_CLIENT_ORGURL or orgUrl in okta.yaml)\n",
            );
        }
    }
    if let Err(e) = eff.credentials(mode) {
        ok = false;
        out.push_str(&format!("credentials: NOT USABLE: {e}\n"));
        if let Some(h) = &e.hint {
            out.push_str(&format!("hint: {h}\n"));
        }
    } else {
        out.push_str("credentials: usable (read and checked, not sent anywhere)\n");
    }
    (out, ok)
}

/// `okta-phone-migrate-report-20261204T155500Z.csv` in the working directory.
pub fn default_report_path() -> PathBuf {
    PathBuf::from(format!("okta-phone-migrate-report-{}.csv", timestamp()))
}

/// UTC time for file names, to the millisecond so that two runs started in
/// the same second do not collide: `20261204T155500123Z`.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-', '.'], "")
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

/// The token from `--token-file`, else `OKTA_CLIENT_TOKEN`, else
/// `OKTA_API_TOKEN` (the older lookup, kept for its tests and callers).
pub fn load_token(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    let ctx = Context {
        env,
        home: None,
        cwd: PathBuf::from("/nonexistent-okta-phone-migrate"),
        tool: None,
    };
    let okta = OktaArgs {
        token_file: file.map(Path::to_path_buf),
        ..OktaArgs::default()
    };
    let eff = effective(&okta, &TuningArgs::default(), None, None, None, &ctx)?;
    match &eff.token {
        Some(t) => read_token(t),
        None => Err(ConfigError::new("no API token").hint(
            "put it in a file readable only by you and pass --token-file, or set OKTA_CLIENT_TOKEN",
        )),
    }
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
            "--rate-share {raw:?} must be a share above 0 and at most 100%, like 50% or 0.5 (a bare 50 would mean 5000%)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_url_rules() {
        assert!(parse_org_url("https://acme.example.com/").is_ok());
        assert!(parse_org_url("http://127.0.0.1:8080").is_ok());
        assert!(parse_org_url("http://[::1]:8080").is_ok());
        assert!(parse_org_url("http://localhost:1").is_ok());
        assert!(parse_org_url("http://acme.example.com").is_err());
        assert!(parse_org_url("https://acme.example.com/api/v1").is_err());
        let admin = parse_org_url("https://acme-admin.example.com").unwrap_err();
        assert_eq!(admin.hint.as_deref(), Some("use acme.example.com"));
        assert!(parse_org_url("acme.example.com").is_err());
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
