//! okta-phone-migrate: bulk-update Okta SMS and voice factor phone numbers
//! without ever leaving a user worse off.
//!
//! `main` only parses the command line and calls [`run`]; everything else
//! lives here so tests can drive it in-process as well as through the binary.

pub mod cli;
pub mod config;
pub mod input;
pub mod job;
pub mod journal;
pub mod lock;
pub mod okta;
pub mod outcome;
pub mod pacer;
pub mod phone;
pub mod progress;
pub mod report;
pub mod rollback;
pub mod runner;
pub mod simulator;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cli::{Cli, Command, OutputArgs};
use config::{ConfigError, Mode};
use progress::eprint_line;
use runner::EXIT_USAGE;

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let output = match &cli.command {
        Command::Apply(a) => a.run.output.clone(),
        Command::Plan(p) => p.run.output.clone(),
        Command::Validate(v) => v.output.clone(),
        Command::Demo(d) => d.output.clone(),
        Command::Rollback(r) => r.output.clone(),
        Command::Simulator(_) => OutputArgs {
            quiet: false,
            verbose: 0,
        },
    };
    init_logging(&output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprint_line(&format!("error: cannot start the async runtime: {e}"));
            return EXIT_USAGE;
        }
    };
    let env = |k: &str| std::env::var(k).ok();
    runtime.block_on(async move {
        match cli.command {
            Command::Apply(a) => {
                if a.activate == a.send_code {
                    eprint_line(
                        "error: apply needs exactly one of --activate or --send-code\n\
                         --activate: the new factor is ACTIVE at once and Okta sends no SMS or call\n\
                         --send-code: the new factor stays pending and Okta texts each user a code to enter",
                    );
                    return EXIT_USAGE;
                }
                match config::run_config(&a.run, Mode::Apply { activate: a.activate }, &env) {
                    Ok(mut cfg) => {
                        cfg.assume_yes = a.yes;
                        cfg.resume = a.resume;
                        runner::run(cfg).await
                    }
                    Err(e) => config_failed(&e),
                }
            }
            Command::Plan(p) => {
                let activate = !p.send_code;
                match config::run_config(&p.run, Mode::Plan { activate }, &env) {
                    Ok(cfg) => runner::run(cfg).await,
                    Err(e) => config_failed(&e),
                }
            }
            Command::Validate(v) => match config::input_options(&v.input) {
                Ok(opts) => runner::validate(&v.input.input, &opts, v.output.quiet).await,
                Err(e) => config_failed(&e),
            },
            Command::Simulator(s) => {
                let cfg = simulator::SimConfig {
                    token: s.token,
                    rate_limit: s.rate_limit,
                    window: Duration::from_secs(s.window.max(1)),
                    concurrency: s.concurrency,
                    latency: Duration::from_millis(s.latency_ms),
                    oie: s.oie,
                };
                let org = match s.org.as_deref().map(simulator::OrgData::load).transpose() {
                    Ok(org) => org.unwrap_or_default(),
                    Err(e) => {
                        eprint_line(&format!("error: {e:#}"));
                        return EXIT_USAGE;
                    }
                };
                match simulator::run_standalone(s.port, cfg, org).await {
                    Ok(()) => 0,
                    Err(e) => {
                        eprint_line(&format!("error: {e:#}"));
                        EXIT_USAGE
                    }
                }
            }
            Command::Rollback(r) => rollback::run(r, &env).await,
            Command::Demo(d) => demo(&d.samples, d.report, d.latency_ms, &d.output).await,
        }
    })
}

fn config_failed(e: &ConfigError) -> u8 {
    eprint_line(&format!("error: {e}"));
    if let Some(h) = &e.hint {
        eprint_line(&format!("hint: {h}"));
    }
    EXIT_USAGE
}

/// The README's first command: the samples against an in-process simulator.
async fn demo(
    samples: &Path,
    report: Option<std::path::PathBuf>,
    latency_ms: u64,
    output: &OutputArgs,
) -> u8 {
    let org = match simulator::OrgData::load(&samples.join("org.json")) {
        Ok(org) => org,
        Err(e) => {
            eprint_line(&format!(
                "error: {e:#} (run the demo from the project folder, or pass --samples DIR)"
            ));
            return EXIT_USAGE;
        }
    };
    let token = "demo-token";
    // A generous limit so the demo takes seconds; the tool still paces
    // itself by the headers as it would against Okta.
    let sim_cfg = simulator::SimConfig {
        token: Some(token.to_string()),
        rate_limit: 3000,
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    };
    let sim =
        match simulator::Simulator::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), sim_cfg, org)
            .await
        {
            Ok(sim) => sim,
            Err(e) => {
                eprint_line(&format!("error: cannot start the simulator: {e}"));
                return EXIT_USAGE;
            }
        };
    eprint_line(&format!(
        "demo: Okta simulator at {} (loaded from {})",
        sim.base_url(),
        samples.display()
    ));
    let args = cli::RunArgs {
        org_url: Some(sim.base_url().to_string()),
        token_file: None,
        input: cli::InputArgs {
            input: samples.join("users.csv"),
            default_region: Some("US".into()),
            factor_type: cli::FactorTypeArg::Sms,
            user_column: None,
            phone_column: None,
            allow_unknown_ranges: false,
        },
        report,
        summary_json: None,
        if_missing: cli::IfMissing::Skip,
        remove_recovery: false,
        also_call: false,
        concurrency: 8,
        rate: None,
        rate_share: "50%".into(),
        timeout: 30,
        output: output.clone(),
    };
    let env = |k: &str| (k == "OKTA_CLIENT_TOKEN").then(|| token.to_string());
    let code = match config::run_config(&args, Mode::Apply { activate: true }, &env) {
        Ok(mut cfg) => {
            cfg.assume_yes = true;
            runner::run(cfg).await
        }
        Err(e) => config_failed(&e),
    };
    sim.shutdown().await;
    code
}

fn init_logging(output: &OutputArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_env("OKTA_PHONE_MIGRATE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,h2=warn,rustls=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(progress::LogWriter::default)
        .try_init();
}
