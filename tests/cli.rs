//! The binary's command line (SPEC §2): `--version`, `check` and `run` with
//! valid and invalid configs, and the promise that secrets never reach the
//! terminal.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{TempDir, accepts, binary, free_addr};

/// Runs the binary with `args` to completion (at most 20 s), with `${ENV}`
/// variables from `env` set.
fn wristband(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn wristband");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "wristband {args:?} still running after 20 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn check(config: &Path) -> Output {
    wristband(&["check", "--config", path_str(config)], &[])
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status; stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

/// A config with an unknown key, a bad duration and a dangling upstream
/// reference, at known places.
const THREE_ERRORS: &str = r#"[server]
lisen = ["127.0.0.1:8080"]
idle_timeout = "5 parsecs"

[[upstreams]]
name = "app"
targets = ["http://127.0.0.1:3000"]

[[routes]]
path = "/"
upstream = "ghost"
"#;

/// Asserts that `stderr` holds exactly `expected` lines, each
/// `FILE:LINE:COL: key.path: message` with a non-empty message.
fn assert_positioned_errors(stderr: &str, file: &Path, expected: &[(usize, usize, &str)]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "stderr:\n{stderr}");
    for (line, (row, col, key)) in lines.iter().zip(expected) {
        let prefix = format!("{}:{row}:{col}: {key}: ", file.display());
        let message = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("expected a line starting {prefix:?}, got {line:?}"));
        assert!(!message.trim().is_empty(), "empty message: {line:?}");
    }
}

#[test]
fn version_prints_name_and_package_version() {
    let output = wristband(&["--version"], &[]);
    assert_exit(&output, 0);
    assert_eq!(
        stdout(&output).trim_end(),
        format!("wristband {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_the_example_config_with_one_summary_line() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let output = check(&example);
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "stdout:\n{out}");
    assert!(!out.trim().is_empty(), "empty summary");
    assert!(
        stderr(&output).trim().is_empty(),
        "stderr:\n{}",
        stderr(&output)
    );
}

#[test]
fn check_reports_every_error_with_file_line_column_and_key_path() {
    let dir = TempDir::new();
    let file = dir.write("bad.toml", THREE_ERRORS);
    let output = check(&file);
    assert_exit(&output, 2);
    assert!(stdout(&output).is_empty(), "stdout:\n{}", stdout(&output));
    assert_positioned_errors(
        &stderr(&output),
        &file,
        &[
            (2, 1, "server.lisen"),
            (3, 16, "server.idle_timeout"),
            (11, 12, "routes[0].upstream"),
        ],
    );
}

#[test]
fn check_reports_a_syntax_error_with_its_position() {
    let dir = TempDir::new();
    let file = dir.write(
        "syntax.toml",
        "[log]\nlevel = \"info\"\n[server\nlisten = []\n",
    );
    let output = check(&file);
    assert_exit(&output, 2);
    let err = stderr(&output);
    let first = err.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix(&format!("{}:3:", file.display()))
        .unwrap_or_else(|| panic!("expected FILE:3:COL:, got {first:?}"));
    let (col, message) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("expected FILE:LINE:COL: message, got {first:?}"));
    assert!(col.parse::<usize>().is_ok(), "column in {first:?}");
    assert!(!message.trim().is_empty(), "empty message: {first:?}");
}

#[test]
fn check_reports_a_missing_file_without_a_position() {
    let dir = TempDir::new();
    let file = dir.path().join("does-not-exist.toml");
    let output = check(&file);
    assert_exit(&output, 2);
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr:\n{err}");
    let message = lines[0]
        .strip_prefix(&format!("{}: ", file.display()))
        .unwrap_or_else(|| panic!("expected `FILE: message`, got {:?}", lines[0]));
    assert!(
        !message.starts_with(|c: char| c.is_ascii_digit()),
        "a missing file has no position: {:?}",
        lines[0]
    );
    assert!(!message.trim().is_empty(), "empty message: {:?}", lines[0]);
}

#[test]
fn check_rejects_an_unset_env_variable_naming_it() {
    let dir = TempDir::new();
    let file = dir.write(
        "env.toml",
        "[log]\nlevel = \"${WRISTBAND_CLI_TEST_SURELY_UNSET}\"\n",
    );
    let mut command = Command::new(binary());
    command
        .args(["check", "--config", path_str(&file)])
        .env_remove("WRISTBAND_CLI_TEST_SURELY_UNSET");
    let output = command.output().expect("run wristband check");
    assert_exit(&output, 2);
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr:\n{err}");
    assert!(
        lines[0].starts_with(&format!("{}:2:", file.display())),
        "positioned at the value: {:?}",
        lines[0]
    );
    assert!(lines[0].contains("log.level"), "key path: {:?}", lines[0]);
    assert!(
        lines[0].contains("WRISTBAND_CLI_TEST_SURELY_UNSET"),
        "names the variable: {:?}",
        lines[0]
    );
}

#[test]
fn an_env_variable_that_is_set_is_substituted() {
    let dir = TempDir::new();
    let file = dir.write(
        "env.toml",
        "[log]\nlevel = \"${WRISTBAND_CLI_TEST_LEVEL}\"\n",
    );
    let output = wristband(
        &["check", "--config", path_str(&file)],
        &[("WRISTBAND_CLI_TEST_LEVEL", "debug")],
    );
    assert_exit(&output, 0);
}

#[test]
fn run_with_an_invalid_config_exits_2_with_check_messages_and_binds_nothing() {
    let dir = TempDir::new();
    let addr = free_addr();
    let admin = free_addr();
    // The same errors as THREE_ERRORS, but with real (free) listeners, so
    // a proxy that bound before validating would hold them.
    let text = format!(
        "[server]\nlisten = [\"{addr}\"]\nlisen = [\"127.0.0.1:8080\"]\nidle_timeout = \"5 parsecs\"\n\
         [admin]\nlisten = \"{admin}\"\n\
         [[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n\
         [[routes]]\npath = \"/\"\nupstream = \"ghost\"\n"
    );
    let file = dir.write("bad.toml", &text);

    let checked = check(&file);
    let ran = wristband(&["run", "--config", path_str(&file)], &[]);
    assert_exit(&checked, 2);
    assert_exit(&ran, 2);
    assert_eq!(
        stderr(&ran),
        stderr(&checked),
        "run prints what check prints"
    );
    assert_positioned_errors(
        &stderr(&ran),
        &file,
        &[
            (3, 1, "server.lisen"),
            (4, 16, "server.idle_timeout"),
            (12, 12, "routes[0].upstream"),
        ],
    );

    // The bare `--config` form is `run` too.
    let bare = wristband(&["--config", path_str(&file)], &[]);
    assert_exit(&bare, 2);
    assert_eq!(stderr(&bare), stderr(&checked));

    for port in [addr, admin] {
        assert!(!accepts(port), "{port} is being listened on");
        std::net::TcpListener::bind(port)
            .unwrap_or_else(|e| panic!("{port} should still be free: {e}"));
    }
}

#[test]
fn secrets_never_appear_in_check_output() {
    const HMAC: &str = "SECRET-HMAC-value-7f3a9c";
    const REDIS_PASSWORD: &str = "SECRET-redis-password-51d2";
    const ENV_SECRET: &str = "SECRET-from-env-0b8e44";
    let dir = TempDir::new();
    let secrets_file = dir.write("secrets.txt", &format!("{HMAC}\n"));
    let env = [("WRISTBAND_CLI_TEST_SECRET", ENV_SECRET)];
    let provider = |secret: &str| {
        format!(
            "[[jwt.providers]]\nname = \"p\"\nissuer = \"https://idp.example.com\"\n\
             audiences = [\"a\"]\nalgorithms = [\"HS256\"]\nhmac_secret = {secret}\n"
        )
    };
    let store = format!(
        "[store]\nkind = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0\"\n"
    );
    let cases = [
        // Valid: the summary line must not print them.
        (0, format!("{store}{}", provider(&format!("\"{HMAC}\"")))),
        (
            0,
            format!("{store}{}", provider("\"${WRISTBAND_CLI_TEST_SECRET}\"")),
        ),
        // Invalid elsewhere.
        (
            2,
            format!(
                "[server]\nlisen = 1\n{store}{}[[routes]]\nupstream = \"ghost\"\n",
                provider(&format!("\"{HMAC}\""))
            ),
        ),
        (
            2,
            format!(
                "[log]\nlevel = 7\n{store}{}",
                provider("\"${WRISTBAND_CLI_TEST_SECRET}\"")
            ),
        ),
        // Invalid at the secret itself.
        (2, provider(&format!("[\"{HMAC}\"]"))),
        (2, provider(&format!("{{ value = \"{HMAC}\" }}"))),
        (
            2,
            format!("[store]\nkind = \"redis\"\nurl = \"{REDIS_PASSWORD}\"\n"),
        ),
        (
            2,
            format!(
                "[store]\nkind = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@h:6379\"\nurl_file = \"{}\"\n",
                secrets_file.display()
            ),
        ),
        (
            2,
            format!(
                "[sessions]\ncodec = \"express\"\nsecrets = [\"{HMAC}\", 3]\n{store}extra = 1\n"
            ),
        ),
    ];
    for (i, (code, text)) in cases.iter().enumerate() {
        let file = dir.write(&format!("case{i}.toml"), text);
        let output = wristband(&["check", "--config", path_str(&file)], &env);
        assert_exit(&output, *code);
        let printed = format!("{}{}", stdout(&output), stderr(&output));
        for secret in [HMAC, REDIS_PASSWORD, ENV_SECRET] {
            assert!(
                !printed.contains(secret),
                "case {i} printed a secret:\n{printed}\n--- config:\n{text}"
            );
        }
    }
}

#[test]
fn an_unusable_tokio_worker_threads_is_refused_by_name_and_binds_nothing() {
    let addr = free_addr();
    let admin = free_addr();
    let (_dir, file) = listening_config(addr, admin);
    for value in ["0", "two", "-1", ""] {
        let ran = wristband(
            &["run", "--config", path_str(&file)],
            &[("TOKIO_WORKER_THREADS", value)],
        );
        assert_exit(&ran, 2);
        assert!(
            stderr(&ran).contains(&format!(
                "TOKIO_WORKER_THREADS must be a positive whole number of threads, not {value:?}"
            )),
            "{value:?}: {}",
            stderr(&ran)
        );
        for port in [addr, admin] {
            assert!(!accepts(port), "{value:?}: {port} is being listened on");
        }
    }
}

#[test]
fn an_unknown_wristband_runtime_is_refused_by_name_and_binds_nothing() {
    let addr = free_addr();
    let admin = free_addr();
    let (_dir, file) = listening_config(addr, admin);
    for value in ["per-core", "Shared", ""] {
        let ran = wristband(
            &["run", "--config", path_str(&file)],
            &[("WRISTBAND_RUNTIME", value), ("TOKIO_WORKER_THREADS", "2")],
        );
        assert_exit(&ran, 2);
        assert!(
            stderr(&ran).contains(&format!(
                "WRISTBAND_RUNTIME must be \"per-thread\" or \"shared\", not {value:?}"
            )),
            "{value:?}: {}",
            stderr(&ran)
        );
        for port in [addr, admin] {
            assert!(!accepts(port), "{value:?}: {port} is being listened on");
        }
    }
}

/// A port another process listens on is refused at start, also with a
/// runtime per worker thread (whose sockets could share a port, were they
/// bound with `SO_REUSEPORT`): exit 2, naming the key.
#[test]
fn a_taken_listen_port_stops_the_start_with_every_runtime_layout() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let admin = free_addr();
    let (_dir, file) = listening_config(addr, admin);
    for threads in ["1", "2"] {
        let ran = wristband(
            &["run", "--config", path_str(&file)],
            &[("TOKIO_WORKER_THREADS", threads)],
        );
        assert_exit(&ran, 1);
        assert!(
            stderr(&ran).contains(&format!("server.listen: cannot bind {addr}")),
            "{threads} thread(s): {}",
            stderr(&ran)
        );
        assert!(
            !accepts(admin),
            "{threads} thread(s): the admin port is listened on"
        );
    }
}

/// A valid config listening on `addr` (admin on `admin`), one public
/// route: its folder (keep it alive) and file.
fn listening_config(
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new();
    let file = dir.write(
        "ok.toml",
        &format!(
            "[server]\nlisten = [\"{addr}\"]\n[admin]\nlisten = \"{admin}\"\n\
             [[upstreams]]\nname = \"app\"\ntargets = [\"http://127.0.0.1:3000\"]\n\
             [[routes]]\npath = \"/\"\nupstream = \"app\"\nauth = \"public\"\n"
        ),
    );
    (dir, file)
}
