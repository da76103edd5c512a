//! The command line as typed: clap's definitions and nothing else. The
//! doc comments are the help text. Validation lives in `config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Bulk-update the phone number of Okta SMS (or voice call) factors from a
/// CSV, safely.
///
/// Okta cannot edit a factor's number in place: for each user the tool lists
/// the factors, deletes the old sms/call factor and enrolls the new number
/// with updatePhone=true. If the enroll fails after the delete, it puts the
/// old number back. Every input row ends with one named outcome in the report.
#[derive(Debug, Parser)]
#[command(name = "okta-phone-migrate", version, propagate_version = true)]
pub struct Cli {
    /// The tool's settings file (YAML: orgUrl, clientId, privateKey,
    /// rateShare, concurrency, defaultRegion, maxFailures, logFormat, ...).
    /// Flags and environment variables win over it. Also
    /// OKTA_PHONE_MIGRATE_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replace each user's factor with the number from the CSV.
    ///
    /// Requires --activate or --send-code. On a terminal it shows the org, the
    /// row count and the activation mode and asks to confirm (--yes skips);
    /// without a terminal it never prompts.
    Apply(ApplyArgs),
    /// Dry run: what `apply` would do for each row. Sends only GET requests.
    Plan(PlanArgs),
    /// Check the CSV offline: no token, no network.
    Validate(ValidateArgs),
    /// Put the old numbers back for the rows a run updated, from its journal.
    ///
    /// Each user whose factor still carries the number the run set gets the
    /// old number back (as an ACTIVE factor); a user whose number changed
    /// since is refused (changed_since) unless --force. Writes its own report.
    Rollback(RollbackArgs),
    /// Serve the built-in Okta simulator on 127.0.0.1 (for trying the tool
    /// and for tests). Prints its base URL as the first line of stdout.
    Simulator(SimulatorArgs),
    /// Run `apply --activate` on the bundled samples against an in-process
    /// simulator, with progress bars and a report.
    Demo(DemoArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings and where each comes from (flag,
    /// environment, --config, okta.yaml, default). Secrets are masked.
    /// Exits 2 when no run could start with them (no org, unusable
    /// credentials), so it doubles as a preflight check.
    Show(ConfigShowArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct ConfigShowArgs {
    #[command(flatten)]
    pub okta: OktaArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Region for numbers written without +.
    #[arg(long, value_name = "CC")]
    pub default_region: Option<String>,

    /// The factor type to replace.
    #[arg(long, value_enum)]
    pub factor_type: Option<FactorTypeArg>,

    /// Show the settings `plan` would use (its default scope is
    /// okta.users.read) instead of those of `apply`.
    #[arg(long)]
    pub plan: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// How to reach the org and sign in. Every one of these can also come from
/// the environment (OKTA_CLIENT_*, as Okta's SDKs name them), from
/// --config, or from okta.yaml (~/.okta/okta.yaml, ./okta.yaml, ./.okta.yaml).
#[derive(Debug, Args, Clone, Default)]
pub struct OktaArgs {
    /// Okta org URL, e.g. https://acme.okta.com. No default. http:// is
    /// refused unless the host is loopback. Also OKTA_CLIENT_ORGURL.
    #[arg(long, value_name = "URL")]
    pub org_url: Option<String>,

    /// SSWS (an API token) or PrivateKey (an OAuth service app). Default:
    /// SSWS when a token is configured, else PrivateKey when a client id
    /// is. Also OKTA_CLIENT_AUTHORIZATIONMODE.
    #[arg(long, value_name = "MODE")]
    pub authorization_mode: Option<String>,

    /// File holding the API token (SSWS). Otherwise the token comes from
    /// OKTA_CLIENT_TOKEN, then OKTA_API_TOKEN, then okta.yaml. Never passed
    /// as an argument.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The OAuth service app's client id. Also OKTA_CLIENT_CLIENTID.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,

    /// File holding the app's private key: PEM (PKCS#8 or PKCS#1) or a
    /// JWK, readable only by you. Also OKTA_CLIENT_PRIVATEKEY (the key
    /// itself or a path).
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,

    /// The key id (kid) registered for the key in Okta; taken from the JWK
    /// when it has one. Also OKTA_CLIENT_PRIVATEKEYID.
    #[arg(long, value_name = "KID")]
    pub key_id: Option<String>,

    /// OAuth scopes to ask for, space- or comma-separated (default:
    /// okta.users.manage; okta.users.read for plan). Also OKTA_CLIENT_SCOPES.
    #[arg(long, value_name = "SCOPES")]
    pub scopes: Option<String>,

    /// Extra trusted CA certificates (PEM), for orgs reached through a
    /// TLS-inspecting proxy. The system's roots stay trusted.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Pace and size of the work. Defaults apply when neither a flag, the
/// environment (OKTA_PHONE_MIGRATE_*) nor --config sets them.
#[derive(Debug, Args, Clone, Default)]
pub struct TuningArgs {
    /// Workers running rows at once (default 8; requests in flight are
    /// fewer when Okta reports its concurrency limit).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: Option<u16>,

    /// Absolute cap in requests per minute (default: none; the org's
    /// rate-limit headers decide).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Share of each Okta rate-limit bucket the run may use, as 50% or 0.5
    /// (default 50%). The rest is left to the org's other clients.
    #[arg(long, value_name = "SHARE")]
    pub rate_share: Option<String>,

    /// Seconds before a single request is abandoned (default 30).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// Options shared by `apply` and `plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub okta: OktaArgs,

    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Report CSV, one line per input row (default: a timestamped file in
    /// the working directory). Created with mode 0600: it holds numbers.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Also write the run's summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// What to do for a user with no factor of the type: skip (outcome
    /// no_factor) or enroll the new number.
    #[arg(long, value_enum, default_value_t = IfMissing::Skip)]
    pub if_missing: IfMissing,

    /// Pass removeRecoveryEnrollment=true on the delete, so Okta also forgets
    /// the old number as a recovery phone. Off by default: with it, a failed
    /// enroll is harder to undo, since the old number is no longer verified.
    #[arg(long)]
    pub remove_recovery: bool,

    /// Also replace a `call` factor that holds the same old number (with
    /// --factor-type sms). Without it the report warns about such factors.
    #[arg(long)]
    pub also_call: bool,

    /// Also set each changed user's profile.mobilePhone to the new number
    /// (a partial profile update, one more request per row). Without it the
    /// profile attribute is left as it is: only the factor changes.
    #[arg(long)]
    pub update_profile: bool,

    /// Stop the run (exit 4) once N rows have failed, or once P% of the
    /// attempted rows have (judged after 20), naming the most common error:
    /// e.g. when the org's policy refuses every enroll. Default: never.
    #[arg(long, value_name = "N|P%")]
    pub max_failures: Option<String>,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Which rows to work on: for a canary run before the whole file. Rows
/// left out get a report line `not_selected`; a later `apply --resume
/// --report SAME` without these options does the rest.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectionArgs {
    /// Only the first N data rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,

    /// Only data rows FIRST-LAST (1-based, inclusive; the header and blank
    /// lines are not counted), e.g. 10-50.
    #[arg(long, value_name = "FIRST-LAST")]
    pub rows: Option<String>,

    /// Only the users listed in FILE, one per line, as written in the CSV
    /// (id, login or email; logins ignoring case).
    #[arg(long, value_name = "FILE")]
    pub only_users: Option<PathBuf>,
}

/// How the input is read.
#[derive(Debug, Args, Clone, Default)]
pub struct InputArgs {
    /// The CSV of users and new numbers.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: PathBuf,

    /// Region for numbers written without +, as an ISO code (US, GB, DE...).
    #[arg(long, value_name = "CC")]
    pub default_region: Option<String>,

    /// The factor type to replace (default sms).
    #[arg(long, value_enum)]
    pub factor_type: Option<FactorTypeArg>,

    /// Header of the user column, when the aliases do not find it.
    #[arg(long, value_name = "NAME")]
    pub user_column: Option<String>,

    /// Header of the new-phone column, when the aliases do not find it.
    #[arg(long, value_name = "NAME")]
    pub phone_column: Option<String>,

    /// Accept numbers of the right length that fall outside every range the
    /// bundled phone metadata knows (ranges newer than the metadata).
    #[arg(long)]
    pub allow_unknown_ranges: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// Only errors; the summary only when a row was not done (exit not 0).
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail in the log (repeat for debug output).
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log lines as human text (default) or JSON objects, one per line,
    /// for a SIEM. Phone numbers are masked in both.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,

    /// Append the log to FILE (created 0600) instead of stderr; stderr then
    /// carries only warnings, errors and the summary.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Without a terminal, log a progress line every SECS seconds
    /// (default 5).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_interval: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Make each new factor ACTIVE at once; Okta sends no SMS or call. Right
    /// for a carrier change when the numbers are known to be correct.
    #[arg(long, conflicts_with = "send_code")]
    pub activate: bool,

    /// Leave each new factor PENDING_ACTIVATION; Okta texts (or calls) each
    /// user a code, and until they enter it they have no usable factor of
    /// that type.
    #[arg(long)]
    pub send_code: bool,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,

    /// Continue the stopped run that wrote --report (same input and
    /// options): rows interrupted between delete and enroll are completed
    /// first, finished rows are not touched again.
    #[arg(long, requires = "report")]
    pub resume: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The journal of the run to undo (REPORT.journal).
    #[arg(long, value_name = "FILE")]
    pub journal: PathBuf,

    /// How to reach the org and sign in; the org defaults to the one in
    /// the journal, and must match it.
    #[command(flatten)]
    pub okta: OktaArgs,

    /// The rollback's own report (default: JOURNAL.rollback-<UTC time>.csv).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Show what would be put back; send no writes.
    #[arg(long)]
    pub dry_run: bool,

    /// Put the old number back even where the factor no longer carries the
    /// number the run set (someone changed it since).
    #[arg(long)]
    pub force: bool,

    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,

    /// Plan as if `apply --activate` (the default).
    #[arg(long, conflicts_with = "send_code")]
    pub activate: bool,

    /// Plan as if `apply --send-code`: a pending factor already on the new
    /// number counts as unchanged.
    #[arg(long)]
    pub send_code: bool,

    /// stdout as a table for people (default), or JSON lines for programs:
    /// one object per row, then one with the counts.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SimulatorArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Org to load (users and factors), e.g. samples/org.json. Empty org
    /// when absent.
    #[arg(long, value_name = "FILE")]
    pub org: Option<PathBuf>,

    /// The only SSWS token accepted (default: any non-empty token). Read
    /// from this flag because the simulator holds no real secret.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,

    /// Requests per window per rate-limit bucket.
    #[arg(long, default_value_t = 600)]
    pub rate_limit: u32,

    /// Rate-limit window in seconds.
    #[arg(long, default_value_t = 60)]
    pub window: u64,

    /// Requests in flight before Okta-style concurrency 429s.
    #[arg(long, default_value_t = 75)]
    pub concurrency: usize,

    /// Latency added to every API response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Identity Engine mode: a user may hold several sms factors.
    #[arg(long)]
    pub oie: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder holding users.csv and org.json.
    #[arg(long, default_value = "samples", value_name = "DIR")]
    pub samples: PathBuf,

    /// Report CSV (default: a timestamped file in the working directory).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Latency the simulator adds to each request, so the bars can be seen.
    #[arg(long, default_value_t = 40)]
    pub latency_ms: u64,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum IfMissing {
    #[default]
    Skip,
    Enroll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormatArg {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FactorTypeArg {
    Sms,
    Call,
}
