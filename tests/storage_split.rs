//! The internet-facing gateway binary links no object-store or key-service HTTP client
//! (issue 11): the storage commands live in the separate `pacsgate-storage` binary, and
//! `pacsgate storage ARGS...` executes it with ARGS unchanged.
//!
//! Abuse cases: a planted `pacsgate-storage` in the current directory (a relative or empty
//! PATH entry, an operator in /tmp) must never run; arguments that look like the gateway's
//! own options (`-c`, `--help`) must reach the tool, not the gateway.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the gateway must not depend on: the object-store client, its HTTP client and XML
/// parser (S3/Azure), the storage crate with its key providers (PKCS#11 loader).
const FORBIDDEN_CRATES: &[&str] = &[
    "object_store",
    "reqwest",
    "quick-xml",
    "pacsgate-storage",
    "cryptoki",
];
/// Their code in a binary, as `nm -C` names it.
const FORBIDDEN_SYMBOLS: &[&str] = &[
    "object_store::",
    "reqwest::",
    "quick_xml::",
    "pacsgate_storage::",
    "cryptoki::",
];

fn cargo() -> Command {
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// `.../target/debug/deps/storage_split-HASH` -> `.../target`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

#[test]
fn gateway_dependency_tree_has_no_object_store_client() {
    let out = cargo()
        .args(["tree", "--offline", "-e", "normal", "-p", "pacsgate"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.lines().count() > 50, "implausibly small tree:\n{tree}");
    let bad: Vec<&str> = tree
        .lines()
        .filter(|l| FORBIDDEN_CRATES.contains(&l.split(' ').next().unwrap_or("")))
        .collect();
    assert!(bad.is_empty(), "the gateway depends on {bad:?}");
}

/// The release build exactly as the README's "Install from source" spells it (the .deb and
/// the quickstart build the same packages together, so Cargo unifies features the same way).
#[test]
fn release_gateway_binary_has_no_object_store_code() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo build --release -p pacsgate "))
        .expect("README: no `cargo build --release -p pacsgate ...` line");
    let words: Vec<&str> = line.split('#').next().unwrap().split_whitespace().collect();
    assert!(
        words.contains(&"pacsgate-storage-cli"),
        "README's build line does not build the storage tool: {line}"
    );
    let target = target_dir();
    let status = cargo()
        .args(&words[1..])
        .arg("--quiet")
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success(), "{line}");

    let gateway = symbols(&target.join("release/pacsgate"));
    assert!(
        gateway.len() > 10_000,
        "symbols stripped? {}",
        gateway.len()
    );
    for needle in FORBIDDEN_SYMBOLS {
        let hits: Vec<&String> = gateway.iter().filter(|s| s.contains(needle)).collect();
        assert!(
            hits.is_empty(),
            "the gateway binary contains {} {needle} symbols, e.g. {:?}",
            hits.len(),
            &hits[..hits.len().min(3)]
        );
    }
    // The scan sees such code where it is: the tool links the object-store client.
    let tool = symbols(&target.join("release/pacsgate-storage"));
    assert!(tool.iter().any(|s| s.contains("object_store::")));
}

fn symbols(binary: &Path) -> Vec<String> {
    let out = Command::new("nm").arg("-C").arg(binary).output().unwrap();
    assert!(out.status.success(), "nm {}", binary.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A directory holding (a hard link to) the gateway binary under test, so the tool beside
/// it is whatever the test puts there.
fn gateway_in(dir: &Path) -> PathBuf {
    let linked = dir.join("pacsgate");
    if std::fs::hard_link(support::gateway::binary(), &linked).is_err() {
        std::fs::copy(support::gateway::binary(), &linked).unwrap();
    }
    linked
}

/// A fake `pacsgate-storage`: prints its arguments one per line and VAULT_TOKEN, touches
/// `ran` in its own directory, exits 7.
fn fake_tool(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("pacsgate-storage");
    let script = format!(
        "#!/bin/sh\ntouch '{}/ran'\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n\
         echo \"token=$VAULT_TOKEN\"\nexit 7\n",
        dir.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[test]
fn storage_runs_the_tool_beside_it_with_arguments_unchanged() {
    let dir = tmp();
    let gateway = gateway_in(dir.path());
    fake_tool(dir.path());
    let args = [
        "keygen", "--help", "-c", "x.toml", "a b", "--out=/k", "", "--",
    ];
    let out = Command::new(&gateway)
        .arg("storage")
        .args(args)
        .env("VAULT_TOKEN", "t0k")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // exec: the tool's exit status is the command's.
    assert_eq!(out.status.code(), Some(7), "{stdout} {out:?}");
    let expected: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(stdout, format!("{expected}token=t0k\n"));

    // `pacsgate storage --help` is the tool's help, not the gateway's.
    let out = Command::new(&gateway)
        .args(["storage", "--help"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[--help]\ntoken=\n");
}

#[test]
fn storage_never_runs_a_tool_from_the_current_directory() {
    let (alone, cwd) = (tmp(), tmp());
    let gateway = gateway_in(alone.path());
    fake_tool(cwd.path());
    for path in ["", ".", ":/usr/bin", "/usr/bin::/bin", "./:bin:/usr/bin"] {
        let out = Command::new(&gateway)
            .args(["storage", "keygen", "--out", "k"])
            .current_dir(cwd.path())
            .env("PATH", path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !cwd.path().join("ran").exists(),
            "PATH={path:?} ran ./pacsgate-storage"
        );
        assert_eq!(out.status.code(), Some(69), "PATH={path:?}: {stderr}");
        assert!(
            stderr.contains("pacsgate-storage is not installed")
                && stderr.contains("cargo build --release -p pacsgate-storage-cli")
                && stderr.lines().count() == 1,
            "{stderr}"
        );
    }
}

#[test]
fn storage_finds_the_tool_on_an_absolute_path_entry() {
    let (alone, bin) = (tmp(), tmp());
    let gateway = gateway_in(alone.path());
    fake_tool(bin.path());
    let path = format!("/nonexistent:{}:/usr/bin", bin.path().display());
    let out = Command::new(&gateway)
        .args(["storage", "verify"])
        .env("PATH", path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(bin.path().join("ran").exists());
}

/// The real tool through the real gateway (the storage tests use this path throughout) and
/// directly: the same key file format either way.
#[test]
fn gateway_and_tool_run_the_same_storage_commands() {
    let dir = tempfile::tempdir().unwrap();
    let tool = support::storage::tool();
    let key = support::storage::keygen(dir.path(), "1.key");
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"the same bytes both ways").unwrap();
    let sealed = dir.path().join("sealed");
    let (status, out) = support::storage::cli(&[
        "encrypt",
        "--key",
        &format!("1:{}", key.display()),
        plain.to_str().unwrap(),
        sealed.to_str().unwrap(),
    ]);
    assert!(status.success(), "{out}");
    let back = dir.path().join("back");
    let out = Command::new(&tool)
        .args(["decrypt", "--key", &format!("1:{}", key.display())])
        .args([&sealed, &back])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), b"the same bytes both ways");
}
