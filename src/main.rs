//! The `wristband` binary: parse the command line, load the config, hand
//! over to the library. Exit codes: 0 ok, 2 invalid config or usage, 1 any
//! other failure.

use std::process::ExitCode;

use clap::Parser;
use wristband::cli::{Cli, Command};
use wristband::config::Config;

fn main() -> ExitCode {
    wristband::install_crypto_provider();
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Check { config }), _) => match Config::load(&config) {
            Ok(config) => {
                println!("{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        (Some(Command::Run { config }), _) | (None, Some(config)) => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            wristband::telemetry::logging::init(&config.log);
            block_on(wristband::run(config))
        }
        (Some(Command::Demo { listen, admin }), _) => block_on(wristband::demo::run(listen, admin)),
        (None, None) => {
            eprintln!("wristband: nothing to do; try `wristband --help`");
            ExitCode::from(2)
        }
    }
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wristband: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wristband: {error:#}");
            ExitCode::FAILURE
        }
    }
}
