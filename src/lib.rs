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
pub mod logging;
pub mod okta;
pub mod outcome;
pub mod pacer;
pub mod phone;
pub mod progress;
pub mod report;
pub mod rollback;
pub mod runner;
pub mod settings;
pub mod simulator;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use cli::{Cli, Command, ConfigCommand, OutputArgs};
use config::{ConfigError, Context, Mode};
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
        Command::Config(ConfigCommand::Show(c)) => c.output.clone(),
        Command::Simulator(_) => OutputArgs::default(),
    };
    let env = |k: &str| std::env::var(k).ok();
    // The settings files are read before anything else: they may say how
    // to log.
    let ctx = match Context::new(&env, cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return config_failed(&e),
    };
    let log = match config::log_settings(&output, &ctx) {
        Ok(l) => l,
        Err(e) => return config_failed(&e),
    };
    if let Err(e) = logging::init(&log) {
        eprint_line(&format!("error: {e}"));
        return EXIT_USAGE;
    }
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
                match config::run_config(&a.run, Mode::Apply { activate: a.activate }, &ctx) {
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
                match config::run_config(&p.run, Mode::Plan { activate }, &ctx) {
                    Ok(mut cfg) => {
                        cfg.plan_format = p.format;
                        runner::run(cfg).await
                    }
                    Err(e) => config_failed(&e),
                }
            }
            Command::Validate(v) => match config::validate_options(&v.input, &ctx) {
                Ok(opts) => runner::validate(&v.input.input, &opts, v.output.quiet).await,
                Err(e) => config_failed(&e),
            },
            Command::Config(ConfigCommand::Show(c)) => {
                let mode = if c.plan {
                    Mode::Plan { activate: true }
                } else {
                    Mode::Apply { activate: true }
                };
                match config::effective(
                    &c.okta,
                    &c.tuning,
                    c.default_region.as_deref(),
                    c.factor_type,
                    None,
                    &ctx,
                ) {
                    Ok(eff) => {
                        let (text, ok) = config::show(&eff, mode, &log);
                        print!("{text}");
                        if ok { 0 } else { EXIT_USAGE }
                    }
                    Err(e) => config_failed(&e),
                }
            }
            Command::Simulator(s) => {
                let cfg = simulator::SimConfig {
                    token: s.token,
                    rate_limit: s.rate_limit,
                    window: Duration::from_secs(s.window.max(1)),
                    concurrency: s.concurrency,
                    latency: Duration::from_millis(s.latency_ms),
                    oie: s.oie,
                    oauth: None,
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
            Command::Rollback(r) => rollback::run(r, &ctx).await,
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
        okta: cli::OktaArgs {
            org_url: Some(sim.base_url().to_string()),
            authorization_mode: Some("SSWS".into()),
            ..Default::default()
        },
        input: cli::InputArgs {
            input: samples.join("users.csv"),
            default_region: Some("US".into()),
            factor_type: Some(cli::FactorTypeArg::Sms),
            ..Default::default()
        },
        report,
        output: output.clone(),
        ..Default::default()
    };
    // The demo's own token and defaults only: no okta.yaml, no --config.
    let env = |k: &str| (k == "OKTA_CLIENT_TOKEN").then(|| token.to_string());
    let ctx = Context {
        env: &env,
        home: None,
        cwd: std::path::PathBuf::from("/nonexistent-okta-phone-migrate"),
        tool: None,
    };
    let code = match config::run_config(&args, Mode::Apply { activate: true }, &ctx) {
        Ok(mut cfg) => {
            cfg.assume_yes = true;
            runner::run(cfg).await
        }
        Err(e) => config_failed(&e),
    };
    sim.shutdown().await;
    code
}
