//! Clients for the tests: a raw HTTP/1.1 one that sends exactly the bytes a
//! test writes (spoofed, duplicated and odd headers included), and a plain
//! request helper on top of it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// What the echo upstream saw.
    pub fn seen(&self) -> super::upstream::Seen {
        assert_eq!(
            self.status,
            200,
            "expected the upstream's echo: {}",
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.text()))
    }
}

/// Sends `head` (request line and headers, `\r\n` separated, without the
/// final blank line) plus `body`, with `Connection: close` added, and reads
/// the whole response.
pub async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let head = head
        .trim_end()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    raw_bytes(addr, head.as_bytes(), body).await
}

/// Sends exactly `head` (bytes, not necessarily UTF-8) plus
/// `Connection: close` and the blank line, then `body`; reads the whole
/// response.
pub async fn raw_bytes(addr: SocketAddr, head: &[u8], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = head.to_vec();
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).await.expect("write head");
    stream.write_all(body).await.expect("write body");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 20s")
        .expect("read");
    parse(&bytes).unwrap_or_else(|| {
        panic!(
            "unparseable response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// `GET path` with extra header lines (`"Name: value"`).
pub async fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Reply {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(addr, &head, b"").await
}

/// Parses one HTTP/1.1 response (content-length, chunked, or until close).
pub fn parse(bytes: &[u8]) -> Option<Reply> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
