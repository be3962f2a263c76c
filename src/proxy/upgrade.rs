//! Protocol upgrades (WebSocket): guarantee 8. The upgrade is proxied only
//! after authentication, and the connection becomes a byte tunnel only once
//! the upstream has answered `101 Switching Protocols`; any other answer is
//! forwarded as an ordinary response and the client connection stays HTTP,
//! so its next request is authenticated again.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client and upstream halves once both sides have switched.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, route: std::sync::Arc<str>) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(route = &*route, %error, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::debug!(
                    route = &*route,
                    bytes_up = up,
                    bytes_down = down,
                    "tunnel closed"
                )
            }
            Err(error) => tracing::debug!(route = &*route, %error, "tunnel ended with an error"),
        }
    });
}
