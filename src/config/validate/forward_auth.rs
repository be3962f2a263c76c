//! [forward_auth] (SPEC §8), [revocation] (SPEC §9), and what ties
//! `admin.token` to them.

use crate::config::diag::join;
use crate::config::raw::{RawForwardAuth, RawRevocation};
use crate::config::{AdminConfig, ForwardAuthConfig, LoginConfig, RevocationConfig};

use super::V;
use super::routes::normalize_route_path;

impl V<'_, '_> {
    pub(super) fn forward_auth(&mut self, raw: RawForwardAuth) -> ForwardAuthConfig {
        let key = join("forward_auth", "path");
        let default = ForwardAuthConfig::DEFAULT_PATH;
        let Some(written) = raw.path else {
            return ForwardAuthConfig {
                path: default.to_owned(),
            };
        };
        // Compared with the normalized request path, so written the one
        // way a request can reach it.
        let path = match normalize_route_path(&written) {
            Ok(path) if path == "/" => {
                self.err(&key, "must not be \"/\": it would answer every request");
                default.to_owned()
            }
            Ok(path) => path,
            Err(problem) => {
                self.err(&key, format!("\"{written}\" {problem}"));
                default.to_owned()
            }
        };
        ForwardAuthConfig { path }
    }

    /// A question is looked for before the login endpoints, so one of
    /// them at or below `forward_auth.path` could never be reached: its
    /// requests would be judged as Envoy-style questions instead.
    pub(super) fn login_outside_forward_auth(
        &mut self,
        forward_auth: &ForwardAuthConfig,
        login: &LoginConfig,
    ) {
        let covered = |path: &str| {
            path.strip_prefix(forward_auth.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        for (key, path) in [
            ("login.login_path", &login.login_path),
            ("login.logout_path", &login.logout_path),
            ("login.redirect_uri", &login.callback_path),
        ] {
            if covered(path) {
                self.err(
                    &join("forward_auth", "path"),
                    format!(
                        "\"{}\" covers {key}'s \"{path}\": forward-auth would answer the login flow's requests",
                        forward_auth.path
                    ),
                );
            }
        }
    }

    pub(super) fn revocation(&mut self, raw: RawRevocation) -> RevocationConfig {
        RevocationConfig {
            propagation: self.positive_duration(
                &join("revocation", "propagation"),
                raw.propagation.as_deref(),
                RevocationConfig::DEFAULT_PROPAGATION,
            ),
        }
    }

    /// `POST /revoke` is all the token opens; without `[revocation]` a
    /// revocation would be written and never enforced.
    pub(super) fn admin_token_needs_revocation(&mut self, admin: &AdminConfig, revocation: bool) {
        if admin.token.is_some() && !revocation {
            let key = if self.diag.key_offset("admin.token_file").is_some() {
                "admin.token_file"
            } else {
                "admin.token"
            };
            self.err(
                key,
                "enables POST /revoke, which needs a [revocation] table (SPEC §9)",
            );
        }
    }
}
