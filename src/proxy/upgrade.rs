//! Protocol upgrades (WebSocket): guarantee 8. The upgrade is proxied only
//! after authentication, and the connection becomes a byte tunnel only once
//! the upstream has answered `101 Switching Protocols`; any other answer is
//! forwarded as an ordinary response and the client connection stays HTTP,
//! so its next request is authenticated again.

use std::sync::Arc;

use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::upstream::ForwardError;
use crate::upstream::pool::PooledBody;

/// On the upstream's answer: a 101 to a request that asked for it joins the
/// two sides; any other answer stays HTTP, without hop-by-hop headers.
pub fn finish(
    response: &mut Response<PooledBody>,
    client: Option<OnUpgrade>,
    route: &Arc<str>,
) -> Result<(), ForwardError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        crate::headers::remove_hop_by_hop(response.headers_mut());
        return Ok(());
    }
    let Some(client) = client else {
        return Err(ForwardError::UnaskedUpgrade);
    };
    let upstream = hyper::upgrade::on(response);
    spawn_tunnel(client, upstream, route.clone());
    Ok(())
}

/// Joins the client and upstream halves once both sides have switched.
fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, route: Arc<str>) {
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
