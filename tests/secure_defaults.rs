//! Secure by default: with no `[users]`, `http.authentication` (default "required") makes
//! the gateway generate an `admin` account on first start (printed once, kept 0600 beside
//! the certificate, only its argon2id hash in memory) instead of forwarding anonymous
//! requests, even on a loopback listener. Pass-through needs `authentication = "none"`,
//! which `check` and the start-up log flag. A planted, leaked or broken password file stops
//! the start with exit 64.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::backend::Backend;
use support::gateway::{binary, curl, http_status, run_expecting_exit, tls_section, Gateway};
use support::pki::{Ca, Leaf};
use support::process::{free_port, run};

/// A gateway config in `dir` serving `server`, HTTP only, in front of `backend`.
fn config(server: &Leaf, dir: &Path, port: u16, backend: u16, http_extra: &str) -> String {
    format!(
        "{}[audit]\npath = {:?}\n[log]\nformat = \"json\"\n[dicom]\nenabled = false\n[http]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{backend}\"\n{http_extra}\n",
        tls_section(server, ""),
        dir.join("audit.jsonl").display().to_string(),
    )
}

/// The password from the framed announcement, if the log has one.
fn announced_password(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.trim_start().strip_prefix("password: "))
        .map(|p| p.trim().to_string())
}

fn check(dir: &Path, toml: &str) -> String {
    let config = dir.join("check.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = Command::new(binary());
    cmd.arg("check").arg("--config").arg(&config);
    let (status, out) = run(cmd, Duration::from_secs(30));
    assert!(status.success(), "{out}");
    out
}

#[test]
fn first_start_generates_an_admin_and_refuses_anonymous_requests() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backend = Backend::start();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let file = server.cert.parent().unwrap().join("admin.password");
    let port = free_port();
    let toml = config(&server, d, port, backend.port(), "");

    let before = check(d, &toml);
    assert!(before.contains("http authentication: required"), "{before}");
    assert!(before.contains("does not exist yet"), "{before}");
    assert!(!file.exists(), "check must not write");

    let gateway = Gateway::start(d, &toml);
    let log = gateway.log();
    let password = announced_password(&log).expect("the password is printed");
    assert!(password.len() >= 22, "{password}");
    let meta = std::fs::metadata(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("admin:{password}\n")
    );

    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{port}/echo");
    let (_, head, _) = curl(&["--cacert", &cacert, "-o", "/dev/null", "-D", "-", &url]);
    assert!(head.starts_with("HTTP/") && head.contains(" 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"pacsgate\""),
        "{head}"
    );
    let status = |user: &str, path: &str, extra: &[&str]| {
        let url = format!("https://localhost:{port}{path}");
        let mut args = vec!["--cacert", cacert.as_str(), "-u", user];
        args.extend_from_slice(extra);
        args.push(&url);
        http_status(&args).1
    };
    assert_eq!(status("admin:wrong-password-123", "/echo", &[]), "401");
    assert_eq!(status(&format!("nobody:{password}"), "/echo", &[]), "401");
    assert_eq!(
        backend.request_count(),
        0,
        "nothing anonymous reached the PACS"
    );
    let creds = format!("admin:{password}");
    assert_eq!(status(&creds, "/echo", &[]), "200");
    assert_eq!(status(&creds, "/echo", &["-X", "DELETE"]), "200");
    // The default rule is "everything outside the deny set".
    assert_eq!(
        status(&creds, "/tools/execute-script", &["-d", "print(1)"]),
        "403"
    );
    assert_eq!(backend.request_count(), 2);

    // The password went to stderr once, framed; never into a log record or the audit.
    let log = gateway.log();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&creds);
    assert_eq!(
        log.matches(password.as_str()).count(),
        2,
        "password + curl line"
    );
    assert!(
        log.lines()
            .filter(|l| l.starts_with('{'))
            .all(|l| !l.contains(&password)),
        "{log}"
    );
    assert!(!log.contains(&b64));
    // Written by the audit thread shortly after the responses.
    let mut audit = String::new();
    support::process::wait_until("the admin's audit records", Duration::from_secs(10), || {
        audit = std::fs::read_to_string(d.join("audit.jsonl")).unwrap_or_default();
        audit.contains("\"rule\":\"authenticated-users\"")
    });
    assert!(audit.contains("\"user\":\"admin\""), "{audit}");
    assert!(
        audit.contains("\"rule\":\"authenticated-users\""),
        "{audit}"
    );
    assert!(!audit.contains(&password) && !audit.contains(&b64));
    drop(gateway);

    // Later starts reuse the file, do not print the password again, and say where it is.
    let port2 = free_port();
    let toml2 = config(&server, d, port2, backend.port(), "");
    let again = Gateway::start(d, &toml2);
    let log2 = again.log();
    assert!(
        announced_password(&log2).is_none() && !log2.contains(&password),
        "{log2}"
    );
    assert!(log2.contains(&file.display().to_string()), "{log2}");
    let url2 = format!("https://localhost:{port2}/echo");
    let (_, code, _) = http_status(&["--cacert", &cacert, "-u", &creds, &url2]);
    assert_eq!(code, "200");
    let after = check(d, &toml2);
    assert!(after.contains("reused on start"), "{after}");
}

#[test]
fn pass_through_needs_authentication_none_and_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backend = Backend::start();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let port = free_port();
    let toml = config(
        &server,
        d,
        port,
        backend.port(),
        "authentication = \"none\"",
    );
    let out = check(d, &toml);
    assert!(
        out.contains("http authentication: none (WARN http.authentication = \"none\""),
        "{out}"
    );
    let gateway = Gateway::start(d, &toml);
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\"WARN\"") && l.contains("http.authentication = \\\"none\\\"")),
        "{log}"
    );
    assert!(!server
        .cert
        .parent()
        .unwrap()
        .join("admin.password")
        .exists());
    let url = format!("https://localhost:{port}/echo");
    let (_, code, _) = http_status(&["--cacert", &ca.path.display().to_string(), &url]);
    assert_eq!(code, "200");
}

/// Puts something at the password file's path.
type Plant<'a> = Box<dyn Fn(&Path) + 'a>;

#[test]
fn broken_leaked_or_planted_password_files_exit_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let file = server.cert.parent().unwrap().join("admin.password");
    let attacker = d.join("attacker-known.txt");
    std::fs::write(&attacker, "admin:attacker-knows-this-one\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&attacker, 0o600);
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "empty",
            Box::new(move |f| {
                std::fs::write(f, "").unwrap();
                mode(f, 0o600);
            }),
            "is empty",
        ),
        (
            "corrupt",
            Box::new(move |f| {
                std::fs::write(f, "\u{feff}garbage\n").unwrap();
                mode(f, 0o600);
            }),
            "does not start with admin:",
        ),
        (
            "world-readable",
            Box::new(move |f| {
                std::fs::write(f, "admin:a-long-enough-password\n").unwrap();
                mode(f, 0o644);
            }),
            "accessible by group or others",
        ),
        (
            "symlink",
            Box::new(|f| std::os::unix::fs::symlink(&attacker, f).unwrap()),
            "is a symbolic link",
        ),
        (
            "directory",
            Box::new(|f| std::fs::create_dir(f).unwrap()),
            "is not a regular file",
        ),
    ];
    for (what, plant, expected) in cases {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_dir(&file);
        plant(&file);
        let port = free_port();
        let toml = config(&server, d, port, free_port(), "");
        for sub in ["run", "check"] {
            let (code, out) = run_expecting_exit(d, &toml, sub);
            assert_eq!(code, Some(64), "{what} ({sub}): {out}");
            let lines: Vec<&str> = out.lines().filter(|l| !l.contains("INFO")).collect();
            assert_eq!(lines.len(), 1, "{what} ({sub}): {out}");
            assert!(
                lines[0].starts_with("pacsgate: configuration error: http.admin_password_file: ")
                    && lines[0].contains(&file.display().to_string())
                    && lines[0].contains(expected),
                "{what} ({sub}): {out}"
            );
            assert!(!out.contains("attacker-knows-this-one"));
            assert!(
                !support::process::port_open(port),
                "{what}: bound before failing"
            );
        }
    }
}

#[test]
fn concurrent_first_starts_share_one_generated_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backend = Backend::start();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let ports = [free_port(), free_port()];
    let gateways: Vec<Gateway> = std::thread::scope(|s| {
        let handles: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let sub = d.join(format!("g{i}"));
                std::fs::create_dir_all(&sub).unwrap();
                let toml = config(&server, &sub, port, backend.port(), "");
                s.spawn(move || Gateway::start(&sub, &toml))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let printed: Vec<String> = gateways
        .iter()
        .filter_map(|g| announced_password(&g.log()))
        .collect();
    assert_eq!(printed.len(), 1, "exactly one start prints a password");
    let creds = format!("admin:{}", printed[0]);
    let cacert = ca.path.display().to_string();
    for port in ports {
        let url = format!("https://localhost:{port}/echo");
        let (_, code, _) = http_status(&["--cacert", &cacert, "-u", &creds, &url]);
        assert_eq!(code, "200", "gateway on {port}");
    }
}

#[test]
fn reloads_keep_the_generated_account_until_users_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backend = Backend::start();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let file = server.cert.parent().unwrap().join("admin.password");
    let cacert = ca.path.display().to_string();
    let alice = format!(
        "[users.alice]\npassword_hash = \"{}\"\n[[http.rules]]\nusers = [\"alice\"]\npaths = [\"/**\"]\n",
        support::policy::hash("alice-Secret-3")
    );
    let reloads = |g: &Gateway, what: &str, n: usize| {
        support::process::wait_until(what, Duration::from_secs(30), || {
            g.log().matches(what).count() >= n
        })
    };

    // Generated account: kept across a reload (the file is not re-read), replaced by users.
    let port = free_port();
    let open = config(&server, d, port, backend.port(), "");
    let g = Gateway::start(d, &open);
    let creds = format!("admin:{}", announced_password(&g.log()).unwrap());
    let status = |port: u16, creds: &str| {
        let url = format!("https://localhost:{port}/echo");
        http_status(&["--cacert", &cacert, "-u", creds, &url]).1
    };
    std::fs::remove_file(&file).unwrap();
    g.proc.signal("HUP");
    reloads(&g, "configuration reloaded", 1);
    assert_eq!(status(port, &creds), "200");
    assert!(!file.exists(), "a reload never writes the file");
    std::fs::write(&g.config, format!("{open}{alice}")).unwrap();
    g.proc.signal("HUP");
    reloads(&g, "configuration reloaded", 2);
    assert_eq!(status(port, &creds), "401");
    assert_eq!(status(port, "alice:alice-Secret-3"), "200");
    drop(g);

    // Started with users: removing them by reload cannot conjure an account; restart.
    let port = free_port();
    let g = Gateway::start(
        d,
        &format!("{}{alice}", config(&server, d, port, backend.port(), "")),
    );
    std::fs::write(&g.config, config(&server, d, port, backend.port(), "")).unwrap();
    g.proc.signal("HUP");
    reloads(&g, "configuration reload failed", 1);
    let log = g.log();
    assert!(
        log.contains("http.admin_password_file") && log.contains("restart pacsgate"),
        "{log}"
    );
    assert!(!file.exists());
    assert_eq!(status(port, "alice:alice-Secret-3"), "200");
}
