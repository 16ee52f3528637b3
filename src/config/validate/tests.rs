//! Pure validation rules; the end-to-end exit-64 behaviour is in tests/config_errors.rs.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/pacsgate"))
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let c = parse("").unwrap();
    let http = c.http.unwrap();
    assert_eq!(http.listen.to_string(), "0.0.0.0:443");
    assert_eq!(http.upstream.authority, "127.0.0.1:8042");
    let dicom = c.dicom.unwrap();
    assert_eq!(dicom.listen.to_string(), "0.0.0.0:11112");
    assert_eq!(dicom.upstream, "127.0.0.1:4242");
    assert_eq!(dicom.artim_timeout, Duration::from_secs(30));
    assert_eq!(
        c.tls.primary.cert,
        Path::new("/etc/pacsgate/certs/server.crt")
    );
    assert_eq!(c.tls.client_auth, ClientAuth::None);
    assert_eq!(c.tls.min_version, TlsVersion::V1_2);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
}

#[test]
fn absolute_paths_stay_and_relative_ones_follow_the_config_file() {
    let c = parse("[tls]\ncert = \"/srv/a.crt\"\nkey = \"k/a.key\"\n").unwrap();
    assert_eq!(c.tls.primary.cert, Path::new("/srv/a.crt"));
    assert_eq!(c.tls.primary.key, Path::new("/etc/pacsgate/k/a.key"));
}

#[test]
fn upstreams_must_be_loopback_unless_allowed() {
    for ok in [
        "http://127.0.0.1:8042",
        "http://localhost:8042",
        "http://[::1]:8042",
        "http://127.0.0.2",
    ] {
        assert!(
            parse(&format!("[http]\nupstream = \"{ok}\"\n")).is_ok(),
            "{ok}"
        );
    }
    assert_eq!(
        parse("[http]\nupstream = \"http://localhost\"\n")
            .unwrap()
            .http
            .unwrap()
            .upstream
            .authority,
        "localhost:80"
    );
    for bad in [
        "http://10.0.0.1:8042",
        "http://pacs:8042",
        "http://[2001:db8::1]:8042",
    ] {
        let e = parse(&format!("[http]\nupstream = \"{bad}\"\n")).unwrap_err();
        assert_eq!(e.key, "http.upstream", "{bad}");
    }
    assert!(
        parse("[http]\nupstream = \"http://10.0.0.1:8042\"\nallow_remote_upstream = true\n")
            .is_ok()
    );
    let e = parse("[dicom]\nupstream = \"10.0.0.1:104\"\n").unwrap_err();
    assert_eq!(e.key, "dicom.upstream");
}

#[test]
fn host_port_forms() {
    assert!(host_port("k", "[::1]:104").is_ok());
    assert!(host_port("k", "pacs-1.example.org:2762").is_ok());
    for bad in [
        "pacs",
        "pacs:",
        ":104",
        "pacs:0",
        "pacs:70000",
        "[::1:104",
        "pa cs:104",
    ] {
        assert!(host_port("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn client_auth_defaults_to_optional_with_a_ca_and_listeners_may_override() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let text = format!(
        "[tls]\nclient_ca = {:?}\n[dicom]\nclient_auth = \"required\"\n",
        ca.display().to_string()
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.tls.client_auth, ClientAuth::Optional);
    assert_eq!(c.http.unwrap().client_auth, ClientAuth::Optional);
    assert_eq!(c.dicom.unwrap().client_auth, ClientAuth::Required);
}

#[test]
fn everything_disabled_is_refused() {
    let e = parse("[http]\nenabled = false\n[dicom]\nenabled = false\n").unwrap_err();
    assert!(e.problem.contains("every listener is disabled"));
}

#[test]
fn durations_and_limits() {
    assert_eq!(duration("k", "250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(duration("k", "5m").unwrap(), Duration::from_secs(300));
    assert!(duration("k", "0s").is_err());
    assert!(duration("k", "30").is_err());
    assert!(parse("[dicom]\nmax_pdu_length = 100\n").is_err());
    assert!(parse("[http]\nmax_header_bytes = 1024\n").is_err());
}

#[test]
fn errors_print_on_one_line_with_key_and_fix() {
    let e = ConfigError::new("tls.cert", "bad\nthing", "do\n  this");
    assert_eq!(e.to_string(), "tls.cert: bad thing; do this");
}

#[test]
fn log_levels_are_level_names_not_target_names() {
    for ok in [
        "info",
        "WARN",
        "off",
        "info,pacsgate=debug",
        "pacsgate::http=trace",
    ] {
        let c = parse(&format!("[log]\nlevel = {ok:?}\n"));
        assert!(c.is_ok(), "{ok}");
    }
    // tracing would read a bare word as a target and log nothing at all.
    for bad in [
        "verbose",
        "",
        "info,verbose",
        "pacsgate=loud",
        "=info",
        "info,,debug",
    ] {
        let e = parse(&format!("[log]\nlevel = {bad:?}\n")).unwrap_err();
        assert!(e.to_string().starts_with("log.level:"), "{bad}: {e}");
    }
}
