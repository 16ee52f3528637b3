//! Certificate lifecycle: a certificate valid for one more day is warned about by `check`,
//! in the start-up log and through `pacsgate_certificate_not_after_seconds` (default
//! window 30 days, `tls.expiry_warning` narrows it); an encrypted PKCS#8 key is refused
//! with one line naming the key and the fix.

mod support;

use std::process::Command;

use support::gateway::{run_expecting_exit, tls_section, Gateway};
use support::http_get;
use support::pki::{Ca, Leaf};
use support::process::free_port;

fn config(server: &Leaf, tls_extra: &str, admin: u16) -> String {
    format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{}\"\n[dicom]\nenabled = false\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
        tls_section(server, tls_extra),
        free_port()
    )
}

#[test]
fn a_certificate_close_to_expiry_is_warned_about_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let short = ca.server_expiring(dir.path(), "short", time::Duration::hours(25));
    let admin = free_port();

    let toml = config(&short, "", admin);
    let (code, out) = run_expecting_exit(dir.path(), &toml, "check");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("warning:") && out.contains("expires in 1 day(s)"),
        "{out}"
    );

    let gateway = Gateway::start(dir.path(), &toml);
    assert!(
        gateway.log().contains("certificate expires soon"),
        "{}",
        gateway.log()
    );
    let (_, body) = http_get(admin, "/metrics").expect("metrics");
    let text = String::from_utf8_lossy(&body);
    let series = format!(
        "pacsgate_certificate_not_after_seconds{{cert=\"{}\"}} ",
        short.cert.display()
    );
    let line = text
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series}:\n{text}"));
    let not_after: i64 = line[series.len()..].trim().parse().expect("seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = not_after - now;
    assert!((86_400..2 * 86_400).contains(&left), "{line}");
    drop(gateway);

    // A narrower window: the same certificate is fine.
    let narrow = config(&short, "expiry_warning = \"12h\"", free_port());
    let (code, out) = run_expecting_exit(dir.path(), &narrow, "check");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning:"), "{out}");

    // A certificate for a year: no warning with the default window.
    let long = ca.server(dir.path(), "long");
    let (code, out) = run_expecting_exit(dir.path(), &config(&long, "", free_port()), "check");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("warning:"), "{out}");
}

#[test]
fn an_encrypted_pkcs8_key_gets_one_line_naming_key_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let encrypted = dir.path().join("server-enc.key");
    let status = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&server.key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .expect("openssl");
    assert!(status.success());
    let pem = std::fs::read_to_string(&encrypted).unwrap();
    assert!(pem.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{pem}");
    let leaf = Leaf {
        cert: server.cert.clone(),
        key: encrypted.clone(),
    };
    for sub in ["check", "run"] {
        let (code, out) = run_expecting_exit(dir.path(), &config(&leaf, "", free_port()), sub);
        assert_eq!(code, Some(64), "{sub}: {out}");
        let line = out
            .lines()
            .find(|l| l.contains("configuration error"))
            .unwrap_or_else(|| panic!("{sub}: {out}"));
        assert!(
            line.contains("tls.key") && line.contains("encrypted") && line.contains("openssl pkey"),
            "{sub}: {line}"
        );
    }
}
