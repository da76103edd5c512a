use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = okta_phone_migrate::cli::Cli::parse();
    ExitCode::from(okta_phone_migrate::run(cli))
}
