//! The CLI's small tools: `rolegate doctor` on a machine as it really is (logged in or
//! not, configured or not, files others can read, a broker that does not answer), and
//! `rolegate completions` evaluated by bash and fish.

use std::process::Command;

use crate::cli_login::broker;
use crate::container::{logged_in_machine, rolegate};

fn output(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI off the test's runtime (it talks to the in-process broker).
async fn run(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = rolegate(home, args);
    cmd.env("AWS_CONFIG_FILE", home.join("aws-config"));
    tokio::task::spawn_blocking(move || output(cmd))
        .await
        .unwrap()
}

fn line<'a>(report: &'a str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.get(7..).is_some_and(|r| r.starts_with(check)))
        .unwrap_or_else(|| panic!("no {check} line in\n{report}"))
}

#[cfg(unix)]
fn private(path: &std::path::Path) {
    Command::new("chmod")
        .args(["-R", "go-rwx"])
        .arg(path)
        .status()
        .unwrap();
}

#[tokio::test]
async fn doctor_finds_what_is_wrong_and_passes_when_nothing_is() {
    let s = broker().await;
    let machine = logged_in_machine(&s).await;
    let home = machine.path();

    // Logged in, but not configured, and the test wrote the files with the default umask.
    let (code, out, err) = run(home, &["doctor"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(line(&out, "broker").starts_with("ok"), "{out}");
    assert!(line(&out, "clock").starts_with("ok"), "{out}");
    let login = line(&out, "login");
    assert!(
        login.starts_with("ok") && login.contains("as alice") && login.contains("ends in"),
        "{out}"
    );
    assert!(line(&out, "aws config").starts_with("FAIL"), "{out}");
    let perms = line(&out, "permissions");
    assert!(
        perms.starts_with("FAIL") && perms.contains("tokens.json"),
        "{out}"
    );

    // Configured, and the folder made private: everything passes.
    let (code, _, err) = run(home, &["configure"]).await;
    assert_eq!(code, 0, "{err}");
    private(&home.join("rolegate"));
    let (code, out, _) = run(home, &["doctor"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        line(&out, "aws config").contains("3 rolegate profile(s)"),
        "{out}"
    );
    assert!(out.ends_with("Everything looks right.\n"), "{out}");

    // A cached credential others can read is named.
    let (code, _, err) = run(home, &["credentials", "--role", "prod-admin"]).await;
    assert_eq!(code, 0, "{err}");
    let cached = home.join("rolegate/cache/prod-admin.json");
    Command::new("chmod")
        .arg("644")
        .arg(&cached)
        .status()
        .unwrap();
    let (code, out, _) = run(home, &["doctor"]).await;
    assert_eq!(code, 1);
    assert!(
        line(&out, "permissions").contains("prod-admin.json"),
        "{out}"
    );
    private(&home.join("rolegate"));

    // After logout: the login check fails and says what to do.
    let (code, _, err) = run(home, &["logout"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(home, &["doctor"]).await;
    assert_eq!(code, 1);
    assert!(line(&out, "login").contains("rolegate login"), "{out}");

    // A broker that does not answer.
    std::fs::write(
        home.join("rolegate/config.toml"),
        "broker = \"http://127.0.0.1:9\"\ntoken_store = \"file\"\n",
    )
    .unwrap();
    let (code, out, _) = run(home, &["doctor"]).await;
    assert_eq!(code, 1);
    let b = line(&out, "broker");
    assert!(b.starts_with("FAIL") && b.contains("cannot reach"), "{out}");
}

#[test]
fn completions_work_in_bash_and_fish() {
    let bin = env!("CARGO_BIN_EXE_rolegate");
    let bash = format!(
        "source <({bin} completions bash)\nCOMP_WORDS=(rolegate serve-cred); COMP_CWORD=1; _rolegate rolegate serve-cred rolegate; echo \"${{COMPREPLY[@]}}\""
    );
    let (code, out, err) = output({
        let mut c = Command::new("bash");
        c.args(["-c", &bash]);
        c
    });
    assert_eq!((code, out.trim()), (0, "serve-credentials"), "{err}");
    if Command::new("fish").arg("--version").output().is_ok() {
        let fish = format!("{bin} completions fish | source; complete -C 'rolegate serve-cred'");
        let (code, out, err) = output({
            let mut c = Command::new("fish");
            c.args(["-c", &fish]);
            c
        });
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("serve-credentials"), "{out}");
    }
    for shell in ["zsh", "powershell"] {
        let (code, out, _) = output({
            let mut c = Command::new(bin);
            c.args(["completions", shell]);
            c
        });
        assert_eq!(code, 0);
        assert!(out.contains("serve-credentials"), "{shell}");
    }
    let (code, _, err) = output({
        let mut c = Command::new(bin);
        c.args(["completions", "tcsh"]);
        c
    });
    assert_eq!(code, 2);
    assert!(err.contains("possible values: bash"), "{err}");
}
