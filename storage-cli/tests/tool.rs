//! The `pacsgate-storage` binary run directly (the gateway's tests run it through
//! `pacsgate storage`, against a real Orthanc): keys, a sealed file round trip, a tampered
//! file refused, and the documentation generated for the .deb.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pacsgate-storage"))
        .args(args)
        .output()
        .unwrap()
}

fn text(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keygen_encrypt_decrypt_and_a_flipped_bit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("1.key");
    let out = tool(&["keygen", "--out", text(&key)]);
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // An existing key is never overwritten (usage error, 64).
    let before = std::fs::read(&key).unwrap();
    assert_eq!(
        tool(&["keygen", "--out", text(&key)]).status.code(),
        Some(64)
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);

    let plain = dir.path().join("plain");
    let secret = b"PatientName^Doe in clear text".repeat(100);
    std::fs::write(&plain, &secret).unwrap();
    let sealed = dir.path().join("sealed");
    let spec = format!("1:{}", key.display());
    let out = tool(&["encrypt", "--key", &spec, text(&plain), text(&sealed)]);
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(
        !bytes.windows(11).any(|w| w == b"PatientName"),
        "plaintext at rest"
    );

    let back = dir.path().join("back");
    let out = tool(&["decrypt", "--key", &spec, text(&sealed), text(&back)]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), secret);

    let mut tampered = bytes;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&sealed, &tampered).unwrap();
    let again = dir.path().join("again");
    let out = tool(&["decrypt", "--key", &spec, text(&sealed), text(&again)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!again.exists(), "a refused decryption left output");
}

#[test]
fn usage_mistakes_exit_64() {
    let out = tool(&["verify"]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("pacsgate-storage: no master key"));
}

#[test]
fn help_man_pages_and_completions_name_every_command() {
    let help = String::from_utf8(tool(&["--help"]).stdout).unwrap();
    let commands = ["keygen", "encrypt", "decrypt", "verify", "migrate", "rekey"];
    for c in commands {
        assert!(help.contains(c), "--help lacks {c}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = tool(&["man", text(dir.path())]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "pacsgate-storage.1",
        "pacsgate-storage-keygen.1",
        "pacsgate-storage-rekey.1",
    ] {
        let roff = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(roff.contains(".TH pacsgate-storage"), "{page}");
    }
    let bash = String::from_utf8(tool(&["completions", "bash"]).stdout).unwrap();
    for c in commands {
        assert!(bash.contains(c), "bash completion lacks {c}");
    }
}
