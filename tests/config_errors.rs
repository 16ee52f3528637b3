//! Every bad configuration exits 64 with one line naming the key and the fix, before any
//! port is bound, for both `run` and `check`.

mod support;

use support::gateway::run_expecting_exit;
use support::pki::Ca;
use support::process::{free_port, port_open};

/// (what, TOML after a valid [tls] section, expected message fragment)
fn cases(
    ok_tls: &str,
    dir: &std::path::Path,
    mismatched_tls: &str,
    not_pem: &str,
) -> Vec<(&'static str, String, String)> {
    let p = free_port();
    vec![
        ("unknown key", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nlistne = \"x\"\n"), "http.listne: unknown field `listne`".into()),
        ("unknown section", format!("{ok_tls}[htpp]\nlisten = \"127.0.0.1:{p}\"\n"), "htpp: unknown field `htpp`".into()),
        ("bad listen address", format!("{ok_tls}[http]\nlisten = \"localhost:443\"\n"), "http.listen: \"localhost:443\" is not an IP address with a port".into()),
        ("bad upstream", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nupstream = \"https://127.0.0.1:8042\"\n"), "http.upstream: \"https://127.0.0.1:8042\" is not a plain http:// URL".into()),
        ("remote upstream", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nupstream = \"http://10.1.2.3:8042\"\n"), "http.upstream: is not a loopback address".into()),
        ("remote dicom upstream", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\n[dicom]\nupstream = \"pacs.example.org:4242\"\n"), "dicom.upstream: is not a loopback address".into()),
        ("missing client CA file", format!("{ok_tls}client_ca = \"{}/nope.pem\"\n[http]\nlisten = \"127.0.0.1:{p}\"\n", dir.display()), "tls.client_ca: cannot read".into()),
        ("client auth without CA", format!("{ok_tls}client_auth = \"required\"\n[http]\nlisten = \"127.0.0.1:{p}\"\n"), "tls.client_auth: client certificates are enabled but tls.client_ca is not set".into()),
        ("unknown client auth", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nclient_auth = \"maybe\"\n"), "http.client_auth: unknown mode \"maybe\"".into()),
        ("bad duration", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nidle_timeout = \"soon\"\n"), "http.idle_timeout: \"soon\" is not a positive duration".into()),
        ("old TLS version", format!("{ok_tls}min_version = \"1.1\"\n[http]\nlisten = \"127.0.0.1:{p}\"\n"), "tls.min_version: unsupported TLS version \"1.1\"".into()),
        ("TOML syntax", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\n"), "line ".into()),
        ("wrong type", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nmax_connections = \"many\"\n"), "http.max_connections: invalid type".into()),
        ("mismatched key", format!("{mismatched_tls}[http]\nlisten = \"127.0.0.1:{p}\"\n"), "tls.key:".into()),
        ("key file is not PEM", format!("{not_pem}[http]\nlisten = \"127.0.0.1:{p}\"\n"), "tls.key:".into()),
        ("outbound without CA", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\n[[dicom.outbound]]\nlisten = \"127.0.0.1:{}\"\nremote = \"peer.example.org:2762\"\n", free_port()), "dicom.outbound[0].ca: is missing".into()),
        ("log level typo", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\n[log]\nlevel = \"verbose\"\n"), "log.level: unknown level or filter \"verbose\"".into()),
        ("pending cap above the total cap", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nmax_pending_per_ip = 9\nmax_connections_per_ip = 8\n"), "http.max_pending_per_ip: 9 is more than http.max_connections_per_ip (8)".into()),
        ("zero per-address cap", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\n[dicom]\nmax_connections_per_ip = 0\n"), "dicom.max_connections_per_ip:".into()),
        ("bad pending timeout", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\npending_timeout = \"0s\"\n"), "http.pending_timeout: \"0s\" is not a positive duration".into()),
        ("upstream clock past the idle timeout", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nidle_timeout = \"30s\"\nupstream_timeout = \"45s\"\n"), "http.upstream_timeout: \"45s\" is not shorter than http.idle_timeout (30s); set it below http.idle_timeout".into()),
        ("zero body clock", format!("{ok_tls}[http]\nlisten = \"127.0.0.1:{p}\"\nupstream_body_timeout = \"0s\"\n"), "http.upstream_body_timeout: \"0s\" is not a positive duration".into()),
        ("half an RSA pair", format!("{ok_tls}rsa_cert = \"x.crt\"\n[http]\nlisten = \"127.0.0.1:{p}\"\n"), "tls.rsa_key: is missing while tls.rsa_cert is set".into()),
    ]
}

#[test]
fn bad_configurations_exit_64_with_one_precise_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Test CA");
    let a = ca.server(d, "a");
    let b = ca.server(d, "b");
    let tls = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let ok_tls = tls(&a.cert, &a.key);
    let mismatched = tls(&a.cert, &b.key);
    std::fs::write(d.join("junk.key"), "this is not a key\n").unwrap();
    let not_pem = tls(&a.cert, &d.join("junk.key"));

    for (what, toml, expected) in cases(&ok_tls, d, &mismatched, &not_pem) {
        let listen_port = toml
            .split("listen = \"127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|p| p.parse::<u16>().ok());
        for sub in ["run", "check"] {
            let (code, out) = run_expecting_exit(d, &toml, sub);
            assert_eq!(
                code,
                Some(64),
                "{what} ({sub}): exit {code:?}, output:\n{out}"
            );
            let lines: Vec<&str> = out.lines().filter(|l| !l.contains(" WARN ")).collect();
            assert_eq!(
                lines.len(),
                1,
                "{what} ({sub}): expected one line, got:\n{out}"
            );
            assert!(
                lines[0].starts_with("pacsgate: configuration error: "),
                "{what}: {out}"
            );
            assert!(
                lines[0].contains(&expected),
                "{what} ({sub}): expected {expected:?} in:\n{out}"
            );
            assert!(lines[0].contains("; "), "{what}: no fix given: {out}");
            if let Some(port) = listen_port {
                assert!(
                    !port_open(port),
                    "{what}: port {port} is open after the refusal"
                );
            }
        }
    }
}

#[test]
fn the_shipped_config_is_valid() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let out = std::process::Command::new(support::gateway::binary())
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("https: 0.0.0.0:443 -> http://127.0.0.1:8042"),
        "{text}"
    );
    assert!(
        text.contains("dicom: 0.0.0.0:11112 -> 127.0.0.1:4242"),
        "{text}"
    );
}
