//! The file-writing and printing commands behave as the DESIGN.md contract says:
//! `cert self-signed` keeps existing files unless `--force` (a silent new key would break
//! every peer that pinned the old fingerprint) and never creates directories the operator
//! did not (their owner and mode decide who reads the key); `storage keygen` names a
//! missing directory; output to a closed pipe (`... | head`) ends quietly, never with a
//! panic (exit 101).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::gateway::binary;
use support::pki::fingerprint;
use support::process::run;

fn pacsgate(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    let (status, out) = run(cmd, Duration::from_secs(60));
    (status.code(), out)
}

fn self_signed(dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let mut args = vec![
        "cert",
        "self-signed",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    pacsgate(&args)
}

#[test]
fn self_signed_keeps_existing_files_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = self_signed(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    let cert = dir.path().join("server.crt");
    let key = std::fs::read(dir.path().join("server.key")).unwrap();
    let first = fingerprint(&cert);

    let (code, out) = self_signed(dir.path(), &[]);
    assert_eq!(code, Some(64), "second run without --force: {out}");
    assert!(out.contains("exists") && out.contains("--force"), "{out}");
    assert_eq!(fingerprint(&cert), first, "certificate replaced");
    assert_eq!(std::fs::read(dir.path().join("server.key")).unwrap(), key);

    // Only the key left: still refused (a half pair is not "nothing there").
    std::fs::remove_file(&cert).unwrap();
    let (code, out) = self_signed(dir.path(), &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(!cert.exists());

    let (code, out) = self_signed(dir.path(), &["--force"]);
    assert_eq!(code, Some(0), "{out}");
    assert_ne!(
        fingerprint(&cert),
        first,
        "--force kept the old certificate"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn self_signed_does_not_create_directories() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir");
    let (code, out) = self_signed(&missing, &[]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("does not exist"), "{out}");
    assert!(!dir.path().join("no").exists(), "a directory was created");
}

#[test]
fn keygen_names_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("keys/1.key");
    let (code, out) = pacsgate(&["storage", "keygen", "--out", out_path.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("does not exist") && out.contains("keys"),
        "{out}"
    );
    assert!(!dir.path().join("keys").exists(), "a directory was created");

    let key = dir.path().join("1.key");
    let (code, out) = pacsgate(&["storage", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = pacsgate(&["storage", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(64), "overwrote a key: {out}");
}

/// Run with stdout a pipe whose reading end is already closed: every write gets EPIPE
/// (Rust ignores SIGPIPE), as when `head` has exited.
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_to_a_closed_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = self_signed(dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    let cert = dir.path().join("server.crt").display().to_string();
    let config = dir.path().join("pacsgate.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"server.crt\"\nkey = \"server.key\"\n[http]\nlisten = \"127.0.0.1:{}\"\n[dicom]\nenabled = false\n",
            support::process::free_port()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    for args in [
        vec!["cert", "inspect", cert.as_str()],
        vec!["check", "--config", config.as_str()],
        vec!["completions", "bash"],
        vec!["man"],
    ] {
        let (code, err) = into_closed_pipe(&args);
        assert!(
            matches!(code, Some(0) | Some(141)),
            "{args:?}: exit {code:?}\n{err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn man_pages_and_completions_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = pacsgate(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    // The storage commands' pages come from their own binary (build-deb.sh runs both).
    let tool = Command::new(support::storage::tool())
        .arg("man")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(tool.success());
    for page in [
        "pacsgate.1",
        "pacsgate-run.1",
        "pacsgate-cert-self-signed.1",
        "pacsgate-storage.1",
        "pacsgate-storage-migrate.1",
    ] {
        let path = dir.path().join(page);
        assert!(path.exists(), "{page} missing");
        // man(1) itself must render it (roff errors would show as warnings here).
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output();
        if let Ok(out) = out {
            assert!(out.status.success(), "man -l {page}");
            assert!(!out.stdout.is_empty(), "{page} renders empty");
        }
    }
    let (code, zsh) = pacsgate(&["completions", "zsh"]);
    assert_eq!(code, Some(0));
    assert!(zsh.contains("#compdef pacsgate"), "{zsh}");
}
