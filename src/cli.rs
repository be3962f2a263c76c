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
    /// Revoke one token (--jti with --exp), or every token of a user issued
    /// before now, ending the user's login sessions too (--sub).
    Revoke {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The token's `jti`.
        #[arg(long, value_name = "ID", requires = "exp", conflicts_with = "sub")]
        jti: Option<String>,
        /// The token's `exp` (unix seconds): how long to remember the `jti`.
        #[arg(long, value_name = "UNIX", requires = "jti")]
        exp: Option<u64>,
        /// The user's `sub`.
        #[arg(long, value_name = "SUB", required_unless_present = "jti")]
        sub: Option<String>,
    },
    /// List a user's login sessions: created and expires, never the ids.
    Sessions {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "SUB")]
        sub: String,
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

    #[test]
    fn revoke_takes_a_jti_with_its_exp_or_a_sub() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["wristband", "revoke", "--config", "c.toml"]
                    .iter()
                    .chain(args),
            )
        };
        assert!(matches!(
            parse(&["--jti", "a", "--exp", "5"]).map(|c| c.command),
            Ok(Some(Command::Revoke {
                jti: Some(_),
                exp: Some(5),
                sub: None,
                ..
            }))
        ));
        assert!(parse(&["--sub", "u"]).is_ok());
        assert!(parse(&["--jti", "a"]).is_err());
        assert!(parse(&["--exp", "5"]).is_err());
        assert!(parse(&["--jti", "a", "--exp", "5", "--sub", "u"]).is_err());
        assert!(parse(&[]).is_err());
        assert!(
            Cli::try_parse_from(["wristband", "sessions", "--config", "c", "--sub", "u"]).is_ok()
        );
    }
}
