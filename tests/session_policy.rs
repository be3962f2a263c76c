//! Route rules that need a session caller: the CSRF origin check (only
//! ambient credentials need it) and a WebSocket upgrade on a required
//! route. Sessions come from the in-memory store, seeded directly.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::client::raw;
use common::{one_upstream, start_proxy, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wristband::auth::session::{MemoryStore, Stored};

const ROUTES: &str = r#"
[sessions]
cookie = "sid"

[[routes]]
name = "forms"
path = "/forms"
upstream = "app"
accept = ["session"]
csrf = "origin"

[[routes]]
name = "live"
path = "/ws"
upstream = "app"
accept = ["session"]
"#;

/// A fresh session for `user` in the process's memory store.
fn seed(user: &str) -> String {
    let id = format!("policy-{user}-{}", std::process::id());
    MemoryStore::shared().insert(
        format!("sessions:{id}"),
        Stored::Hash(vec![("user_id".into(), user.into())]),
        Some(Duration::from_secs(600)),
    );
    id
}

#[tokio::test]
async fn a_session_post_needs_an_origin_on_this_host() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let sid = seed("carol");
    let host = px.addr.to_string();
    let post = |extra: &str| {
        format!(
            "POST /forms/save HTTP/1.1\r\nHost: {host}\r\nCookie: sid={sid}\r\nContent-Length: 0{extra}"
        )
    };
    let cases = [
        ("", 403, "no Origin, no Referer"),
        ("\r\nOrigin: https://evil.example", 403, "foreign Origin"),
        ("\r\nOrigin: null", 403, "opaque Origin"),
        (
            "\r\nReferer: https://evil.example/x",
            403,
            "foreign Referer",
        ),
        (&*format!("\r\nOrigin: http://{host}"), 200, "same Origin"),
        (
            &*format!("\r\nReferer: http://{host}/forms"),
            200,
            "same-host Referer",
        ),
    ];
    for (extra, status, why) in cases {
        let reply = raw(px.addr, &post(extra), b"").await;
        assert_eq!(reply.status, status, "{why}: {}", reply.text());
        if status == 403 {
            assert_eq!(reply.json()["error"], "forbidden", "{why}");
        }
    }
    // Safe methods are not checked.
    let get = format!("GET /forms HTTP/1.1\r\nHost: {host}\r\nCookie: sid={sid}");
    assert_eq!(raw(px.addr, &get, b"").await.status, 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_websocket_on_a_required_route_is_tunnelled_for_a_valid_session() {
    let up = upstream::echo().await;
    let px = start_proxy(&one_upstream(up.addr, ROUTES)).await;
    let sid = seed("dave");
    let mut stream = TcpStream::connect(px.addr).await.expect("connect");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: a\r\nCookie: sid={sid}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.expect("read"),
            1,
            "closed mid-head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream.write_all(b"hello").await.expect("write");
    let mut echoed = [0u8; 5];
    stream.read_exact(&mut echoed).await.expect("echo");
    assert_eq!(&echoed, b"hello");
}
