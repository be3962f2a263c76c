//! rustls with aws-lc-rs, both ways: the client listener's acceptor
//! ([`server`]) and the config every outbound TLS connection uses
//! ([`client`]: upstreams, JWKS, Redis). Nothing here knows the proxy, so
//! any stage may use it.

pub mod client;
pub mod server;
