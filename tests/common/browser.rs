//! A real browser for the end-to-end tests: Debian's headless Chromium
//! driven over WebDriver (W3C WebDriver, <https://www.w3.org/TR/webdriver2/>)
//! by a `chromedriver` child. Only a real browser applies the cookie rules
//! of RFC 6265bis (`SameSite`, `HttpOnly`, `__Host-`) to redirects the way a
//! user's browser does, which is what a login flow depends on.
//!
//! `.ci/install-browser.sh` installs `chromium` and `chromium-driver`.
//! Each [`Browser`] has its own `chromedriver` on a port picked free just
//! before the start, in its own process group with the Chromium it spawns,
//! and a fresh profile in a temp directory; drop ends the session and kills
//! the whole group by its id.
//!
//! The WebDriver traffic is plain HTTP on loopback, so the client has no TLS
//! connector at all: fantoccini is built without its TLS features.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use super::client::{Reply, parse};
use super::process::{TempDir, free_addr};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags every session starts Chromium with. The last three stop it
/// dialling Google's services (updates, sync, field trials) on its own: the
/// network here refuses them, and a test should see only the requests its
/// pages cause. `--no-sandbox` because the tests run as root.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Bounds on the browser's own waits, so that a page that never loads fails
/// the test instead of hanging it (WebDriver's default page load timeout is
/// 300 s).
const PAGE_LOAD_LIMIT: Duration = Duration::from_secs(15);
const FIND_LIMIT: Duration = Duration::from_secs(5);
const START_LIMIT: Duration = Duration::from_secs(20);

/// A cookie as the browser holds it: everything WebDriver's Get All Cookies
/// exposes, which (unlike `document.cookie`) includes `HttpOnly` cookies and
/// their attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub http_only: bool,
    pub secure: bool,
    /// `"Strict"`, `"Lax"` or `"None"`.
    pub same_site: Option<String>,
    /// Unix seconds; `None` for a session cookie.
    pub expiry: Option<i64>,
}

/// One headless Chromium session and the `chromedriver` that drives it.
pub struct Browser {
    client: Client,
    session: String,
    driver: Driver,
}

impl Browser {
    /// Starts `chromedriver` on a free port, waits until it is ready, and
    /// opens a headless session with a fresh profile.
    pub async fn start() -> Browser {
        let driver = Driver::start().await;
        let profile = driver.dir.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": args }),
        );
        capabilities.insert(
            "timeouts".into(),
            serde_json::json!({
                "pageLoad": PAGE_LOAD_LIMIT.as_millis(),
                "script": PAGE_LOAD_LIMIT.as_millis(),
                "implicit": 0,
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{}", driver.addr))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.log()));
        let session = client
            .session_id()
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("chromedriver gave no session id\n{}", driver.log()));
        Browser {
            client,
            session,
            driver,
        }
    }

    /// The fantoccini client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits until the page (after any redirects)
    /// has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The URL of the page the browser shows now.
    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("current url: {e}"))
            .to_string()
    }

    /// Replaces the value of the field matched by `css` with `text`, typed
    /// as a user would.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the element matched by `css` (a link or a submit button) and
    /// waits until the page it was on has been replaced and the new one
    /// has loaded. Chromedriver returns from the click before a form
    /// submission has even started, so without this wait the next command
    /// may still see the old page.
    pub async fn click(&self, css: &str) {
        let old_page = self.find("html").await;
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
        let deadline = Instant::now() + PAGE_LOAD_LIMIT;
        loop {
            match old_page.tag_name().await {
                Err(e) if e.is_stale_element_reference() => break,
                Err(e) => panic!("after clicking {css}: {e}"),
                Ok(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} left the browser on {} for {PAGE_LOAD_LIMIT:?}",
                self.url_for_message().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_loaded().await;
    }

    /// Waits (bounded) until the current document has loaded.
    async fn wait_loaded(&self) {
        let deadline = Instant::now() + PAGE_LOAD_LIMIT;
        loop {
            let state = self
                .client
                .execute("return document.readyState", Vec::new())
                .await
                .unwrap_or_else(|e| panic!("document.readyState: {e}"));
            if state == "complete" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still {state} after {PAGE_LOAD_LIMIT:?}",
                self.url_for_message().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cookies the browser would send to the current page's URL, with
    /// their attributes.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .unwrap_or_else(|e| panic!("get cookies: {e}"));
        cookies
            .iter()
            .map(|c| BrowserCookie {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                domain: c.domain().map(str::to_owned),
                path: c.path().map(str::to_owned),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
                expiry: c
                    .expires()
                    .and_then(|e| e.datetime())
                    .map(|t| t.unix_timestamp()),
            })
            .collect()
    }

    /// The cookie called `name` that the current page's URL would get, if
    /// any.
    pub async fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().await.into_iter().find(|c| c.name == name)
    }

    /// The rendered text of the page's body, as a user reads it.
    pub async fn page_text(&self) -> String {
        self.find("body")
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("page text: {e}"))
    }

    /// The element matched by `css`, waiting (bounded) for it to appear.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(FIND_LIMIT)
            .every(Duration::from_millis(20))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!("find {css} on {}: {e}", self.url_for_message().await),
        }
    }

    async fn url_for_message(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(url unknown: {e})"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await the fantoccini client, so the session is ended
        // with a blocking request of our own: Chromium exits cleanly, and
        // the driver's drop then kills whatever is left.
        let path = format!("/session/{}", self.session);
        let _ = driver_request(self.driver.addr, "DELETE", &path);
    }
}

/// A `chromedriver` child in its own process group, with its log and the
/// browser profile in a temp directory; the group is killed on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Driver {
    /// Spawns `chromedriver` on a port that was free a moment ago and waits
    /// until `/status` says it is ready; when it exits first (it lost the
    /// port to another process), tries again on another port.
    async fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: run .ci/install-browser.sh"
        );
        for _ in 0..5 {
            let mut driver = Driver::spawn(free_addr());
            let deadline = Instant::now() + START_LIMIT;
            loop {
                if driver_ready(driver.addr).await {
                    return driver;
                }
                if driver.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver not ready within {START_LIMIT:?}\n{}",
                    driver.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("chromedriver did not start on any of 5 ports");
    }

    fn spawn(addr: SocketAddr) -> Driver {
        let dir = TempDir::new();
        let out = std::fs::File::create(dir.path().join("chromedriver.out")).expect("log file");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", addr.port()))
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            // Its own process group, so that one kill reaches Chromium and
            // its helpers too, and never the test process.
            .process_group(0)
            // Chromium keeps its crash database under the XDG config
            // directory whatever `--user-data-dir` says; keep it in here.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        Driver { child, addr, dir }
    }

    /// The driver's output and the tail of its log, for a failure message.
    fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let log = read("chromedriver.log");
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        format!(
            "chromedriver output:\n{}\nchromedriver log (last 40 lines):\n{}",
            read("chromedriver.out"),
            tail.join("\n")
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the driver's PID (`process_group(0)`). Only
        // Chromium's crash handler is outside it (it starts a session of
        // its own); it exits by itself once Chromium is gone.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `/status` on `addr` says the driver takes new sessions.
async fn driver_ready(addr: SocketAddr) -> bool {
    let reply = tokio::task::spawn_blocking(move || driver_request(addr, "GET", "/status"))
        .await
        .ok()
        .flatten();
    let Some(reply) = reply.filter(|r| r.status == 200) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&reply.body)
        .map(|status| status["value"]["ready"] == serde_json::Value::Bool(true))
        .unwrap_or(false)
}

/// One bodiless request to the driver, blocking for at most a few seconds.
/// The reply is read up to its `Content-Length`, not to the end of the
/// stream: chromedriver answers `Connection: close` but keeps the
/// connection open.
fn driver_request(addr: SocketAddr, method: &str, path: &str) -> Option<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).ok()?;
        bytes.extend_from_slice(&chunk[..read]);
        let reply = parse(&bytes);
        let complete = reply.as_ref().is_some_and(|r| {
            r.header("content-length")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| r.body.len() >= n)
        });
        if complete || read == 0 {
            return reply;
        }
    }
}
