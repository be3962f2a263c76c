//! The command line of SPEC §2.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "wristband",
    version,
    about = "An auth-enforcing reverse proxy: sessions from a shared Redis, JWTs from cached JWKS.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run the proxy with this config (same as `wristband run --config FILE`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0 with a summary, or 2 with every error.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run a self-contained demo on loopback: the proxy, an echo backend and
    /// ready-to-paste curl commands.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value_t = crate::config::ServerConfig::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Where its admin endpoints listen.
        #[arg(long, default_value_t = crate::config::AdminConfig::DEFAULT_LISTEN)]
        admin: std::net::SocketAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_config_flag_means_run() {
        let cli = Cli::try_parse_from(["wristband", "--config", "x.toml"]).expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert!(cli.command.is_none());
    }

    #[test]
    fn subcommands_parse() {
        let cli =
            Cli::try_parse_from(["wristband", "check", "--config", "a.toml"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Check { .. })));
        let cli = Cli::try_parse_from(["wristband", "demo"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Demo { .. })));
    }
}
