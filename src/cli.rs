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
}

/// Options shared by `apply` and `plan`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Okta org URL, e.g. https://acme.okta.com. No default. http:// is
    /// refused unless the host is loopback.
    #[arg(long, env = "OKTA_CLIENT_ORGURL", value_name = "URL")]
    pub org_url: Option<String>,

    /// File holding the API token (SSWS). Otherwise the token comes from
    /// OKTA_CLIENT_TOKEN, then OKTA_API_TOKEN. Never passed as an argument.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    #[command(flatten)]
    pub input: InputArgs,

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

    /// Workers running rows at once (requests in flight are fewer when Okta
    /// reports its concurrency limit).
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Absolute cap in requests per minute (default: none; the org's
    /// rate-limit headers decide).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Share of each Okta rate-limit bucket the run may use, as 50% or 0.5.
    /// The rest is left to the org's other clients.
    #[arg(long, default_value = "50%", value_name = "SHARE")]
    pub rate_share: String,

    /// Seconds before a single request is abandoned.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// How the input is read.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// The CSV of users and new numbers.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: PathBuf,

    /// Region for numbers written without +, as an ISO code (US, GB, DE...).
    #[arg(long, value_name = "CC")]
    pub default_region: Option<String>,

    /// The factor type to replace.
    #[arg(long, value_enum, default_value_t = FactorTypeArg::Sms)]
    pub factor_type: FactorTypeArg,

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

#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Only errors and the summary.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail in the log (repeat for debug output).
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,
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

    /// Okta org URL; defaults to the org in the journal, and must match it.
    #[arg(long, env = "OKTA_CLIENT_ORGURL", value_name = "URL")]
    pub org_url: Option<String>,

    /// File holding the API token (else OKTA_CLIENT_TOKEN, OKTA_API_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The rollback's own report (default: a timestamped file).
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

    /// Rows worked at once.
    #[arg(long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Absolute cap in requests per minute.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Share of each Okta rate-limit bucket the rollback may use.
    #[arg(long, default_value = "50%", value_name = "SHARE")]
    pub rate_share: String,

    /// Seconds before a single request is abandoned.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub timeout: u64,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IfMissing {
    Skip,
    Enroll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FactorTypeArg {
    Sms,
    Call,
}
