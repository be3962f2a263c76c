//! The `wristband` binary: parse the command line, load the config, hand
//! over to the library. Exit codes: 0 ok, 2 invalid config or usage, 1 any
//! other failure.

use std::process::ExitCode;

use clap::Parser;
use wristband::auth::revocation::{Revoke, command};
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
            serve(config)
        }
        (Some(Command::Demo { listen, admin }), _) => block_on(wristband::demo::run(listen, admin)),
        (
            Some(Command::Revoke {
                config,
                jti,
                exp,
                sub,
            }),
            _,
        ) => {
            let what = match (jti, exp, sub) {
                (Some(jti), Some(exp), None) => Revoke::Jti { jti, exp },
                (None, None, Some(sub)) => Revoke::Sub { sub },
                // clap's `requires` / `conflicts_with` leave only those two.
                _ => {
                    eprintln!("wristband: give --jti with --exp, or --sub");
                    return ExitCode::from(2);
                }
            };
            store_command(&config, |config| async move {
                command::revoke_command(&config, what).await
            })
        }
        (Some(Command::Sessions { config, sub }), _) => {
            store_command(&config, |config| async move {
                command::sessions_command(&config, &sub).await
            })
        }
        (None, None) => {
            eprintln!("wristband: nothing to do; try `wristband --help`");
            ExitCode::from(2)
        }
    }
}

/// `wristband revoke` / `sessions` (SPEC §9): exit 0 with what was done
/// on stdout, or 2 with why not on stderr.
fn store_command<F, Fut>(path: &std::path::Path, run: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let runtime = match build(
        tokio::runtime::Builder::new_current_thread(),
        ExitCode::from(2),
    ) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(config)) {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("wristband: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The proxy itself. With more than one worker thread, one
/// single-threaded runtime per thread (`wristband::Workers`; the rest of
/// the process on this thread's), unless `WRISTBAND_RUNTIME=shared` asks
/// for tokio's work-stealing pool: on two cores the first served ~1.4x
/// the requests of the second (bench/, `SWEEP=runtimes`).
fn serve(config: Config) -> ExitCode {
    let shared = match std::env::var("WRISTBAND_RUNTIME").as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("per-thread") => false,
        Ok("shared") => true,
        Ok(other) => {
            eprintln!(
                "wristband: WRISTBAND_RUNTIME must be \"per-thread\" or \"shared\", not {other:?}"
            );
            return ExitCode::from(2);
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("wristband: WRISTBAND_RUNTIME must be \"per-thread\" or \"shared\"");
            return ExitCode::from(2);
        }
    };
    match worker_threads() {
        Ok(n) if n > 1 && !shared => {
            let runtime = match build(
                tokio::runtime::Builder::new_current_thread(),
                ExitCode::FAILURE,
            ) {
                Ok(runtime) => runtime,
                Err(code) => return code,
            };
            finish(runtime.block_on(wristband::run_with(
                config,
                wristband::Workers::PerThread(n),
            )))
        }
        _ => block_on(wristband::run(config)),
    }
}

/// The runtime `builder` makes, or `failure` once the reason is printed.
fn build(
    mut builder: tokio::runtime::Builder,
    failure: ExitCode,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("wristband: cannot start the runtime: {error}");
        failure
    })
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wristband: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    // With one worker, a single-threaded runtime: a multi-threaded one pays
    // for work stealing, and its LIFO wake-up slot runs fred's writer right
    // after each request queues a command (fred flushes whenever its queue
    // is empty), which works against writing concurrent requests' Redis
    // commands together. An A/B on one core measured ~11% less CPU per
    // request for the single thread (public route and session route).
    let threads = match worker_threads() {
        Ok(threads) => threads,
        Err(message) => {
            eprintln!("wristband: {message}");
            return ExitCode::from(2);
        }
    };
    let builder = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = match build(builder, ExitCode::FAILURE) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    finish(runtime.block_on(future))
}

/// `TOKIO_WORKER_THREADS` (tokio's own setting), else one per CPU this
/// process may use (cgroup quotas included). A value that is not a positive
/// whole number is refused, not ignored: an operator who set it meant it.
fn worker_threads() -> Result<usize, BadWorkerThreads> {
    match std::env::var("TOKIO_WORKER_THREADS") {
        Err(std::env::VarError::NotPresent) => {
            Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(BadWorkerThreads(Some(value))),
        },
        Err(std::env::VarError::NotUnicode(_)) => Err(BadWorkerThreads(None)),
    }
}

/// The value of `TOKIO_WORKER_THREADS`, when it is text.
#[derive(Debug, thiserror::Error)]
#[error("TOKIO_WORKER_THREADS must be a positive whole number of threads{}", .0.as_ref().map(|v| format!(", not {v:?}")).unwrap_or_default())]
struct BadWorkerThreads(Option<String>);
