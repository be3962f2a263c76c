//! `wristband demo` does what it prints: every curl command it suggests,
//! run as printed, gives the outcome its comment announces.

use std::process::Command;

use wristband::demo::Demo;

/// (expected status, the curl command line) for every command whose comment
/// ends with "(STATUS...)".
fn commands(instructions: &str) -> Vec<(u16, String)> {
    let lines: Vec<&str> = instructions.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let comment = pair[0].strip_prefix('#')?;
            let status = comment.rsplit_once('(')?.1.get(..3)?.parse().ok()?;
            pair[1]
                .starts_with("curl ")
                .then(|| (status, pair[1].to_owned()))
        })
        .collect()
}

// curl runs as a blocking child process: the proxy needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_printed_curl_command_gives_the_announced_outcome() {
    wristband::install_crypto_provider();
    let any = "127.0.0.1:0".parse().expect("addr");
    let demo = Demo::start(any, any).await.expect("demo starts");
    let text = demo.instructions();
    let commands = commands(&text);
    assert!(commands.len() >= 7, "too few commands found in:\n{text}");
    for (status, command) in &commands {
        // Same command, plus the status code on the last line of output.
        let line = format!("{command} -w '\\n%{{http_code}}'");
        let output =
            tokio::task::spawn_blocking(move || Command::new("sh").arg("-c").arg(line).output())
                .await
                .expect("join")
                .expect("curl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let code: u16 = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        assert_eq!(code, *status, "{command}\n{stdout}");
        if command.contains("Bearer") && *status == 200 {
            assert!(
                stdout.contains(r#""x-auth-user": "alice""#),
                "{command}\n{stdout}"
            );
            assert!(
                stdout.contains(r#""x-auth-roles": "dev""#),
                "{command}\n{stdout}"
            );
            assert!(
                !stdout.contains("root"),
                "forged identity survived: {stdout}"
            );
        }
        if command.contains("Cookie: sid=") && *status == 200 {
            assert!(
                stdout.contains(r#""x-auth-user": "bob""#),
                "{command}\n{stdout}"
            );
        }
        if command.contains("X_Auth_User") {
            assert!(
                !stdout.to_ascii_lowercase().contains("x-auth-user"),
                "{stdout}"
            );
            assert!(
                !stdout.to_ascii_lowercase().contains("x_auth_user"),
                "{stdout}"
            );
        }
    }
}
