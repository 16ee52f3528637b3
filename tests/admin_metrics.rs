//! The admin listener in front of a real Orthanc 1.10.1: every metric family moves when
//! its event happens (curl over HTTPS, dcmtk echoscu/storescu over DICOM TLS, SIGHUP,
//! a stopped PACS), `/healthz` answers, `/readyz` goes unready when Orthanc stops, and a
//! non-loopback `admin.listen` is refused unless `allow_remote`.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use support::dicom::{dcmtk, dcmtk_args, ECHOSCU, STORESCU};
use support::gateway::{http_status, run_expecting_exit, tls_section, Gateway};
use support::http_get;
use support::orthanc::Orthanc;
use support::pki::Ca;
use support::policy::{hash, ADMIN_PW};
use support::process::{free_port, wait_until};

/// The value of the series `name` whose labels include all of `labels` (0 if absent).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").expect("admin listener answers");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8 metrics")
}

/// Asserts that `event` raises the series by at least one.
fn moves(admin: u16, name: &str, labels: &[(&str, &str)], event: impl FnOnce()) {
    let before = value(&scrape(admin), name, labels);
    event();
    let text = scrape(admin);
    let after = value(&text, name, labels);
    assert!(
        after > before,
        "{name}{labels:?} did not move ({before} -> {after}):\n{text}"
    );
}

#[test]
fn every_family_moves_and_readyz_follows_the_pacs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orthanc = Orthanc::start(d, serde_json::json!({}));
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let (https, dicom, admin) = (free_port(), free_port(), free_port());
    let toml = format!(
        r#"{tls}
[admin]
listen = "127.0.0.1:{admin}"
[http]
listen = "127.0.0.1:{https}"
upstream = "http://127.0.0.1:{http_up}"
[http.rate_limits]
auth_failures_per_user = "2/min"
[[http.rate_limits.routes]]
paths = ["/statistics"]
rate = "1/min"
[dicom]
listen = "127.0.0.1:{dicom}"
upstream = "127.0.0.1:{dicom_up}"
called_aet = "ORTHANC"
always_allow_store = false
[dicom.modalities.ct]
aet = "CT1"
allow = ["echo", "store"]
[dicom.modalities.viewer]
aet = "VIEWER"
allow = ["echo"]
[users.admin]
password_hash = "{hash}"
[[http.rules]]
users = ["admin"]
paths = ["/**"]
"#,
        tls = tls_section(&server, ""),
        http_up = orthanc.http_port,
        dicom_up = orthanc.dicom_port,
        hash = hash(ADMIN_PW),
    );
    let mut gateway = Gateway::start(d, &toml);
    let cacert = ca.path.display().to_string();
    let url = |p: &str| format!("https://localhost:{https}{p}");
    let creds = format!("admin:{ADMIN_PW}");
    let get = |extra: &[&str], path: &str| {
        let mut args = vec!["--http1.1", "--cacert", &cacert];
        args.extend_from_slice(extra);
        let u = url(path);
        args.push(&u);
        http_status(&args).1
    };

    assert_eq!(http_get(admin, "/healthz").map(|r| r.0), Some(200));
    let (code, body) = http_get(admin, "/readyz").expect("readyz");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    let ok = [("status", "200")];
    moves(admin, "pacsgate_http_requests_total", &ok, || {
        assert_eq!(get(&["-u", &creds], "/system"), "200");
    });
    moves(
        admin,
        "pacsgate_http_request_duration_seconds_count",
        &[],
        || {
            get(&["-u", &creds], "/system");
        },
    );
    let h11 = [
        ("listener", "https"),
        ("result", "ok"),
        ("alpn", "http/1.1"),
    ];
    moves(admin, "pacsgate_tls_handshakes_total", &h11, || {
        get(&["-u", &creds], "/system");
    });
    let out = [("listener", "https"), ("direction", "out")];
    moves(admin, "pacsgate_relayed_bytes_total", &out, || {
        get(&["-u", &creds], "/system");
    });
    let failed = [("listener", "https"), ("result", "failed")];
    moves(admin, "pacsgate_tls_handshakes_total", &failed, || {
        // Plain HTTP on the TLS port: the handshake fails.
        let plain = format!("http://127.0.0.1:{https}/");
        http_status(&["--max-time", "5", &plain]);
    });
    let unauth = [("reason", "unauthenticated")];
    moves(admin, "pacsgate_http_refusals_total", &unauth, || {
        assert_eq!(get(&[], "/system"), "401");
    });
    moves(
        admin,
        "pacsgate_rate_limit_refusals_total",
        &[("limit", "route")],
        || {
            get(&["-u", &creds], "/statistics");
            assert_eq!(get(&["-u", &creds], "/statistics"), "429");
        },
    );
    moves(admin, "pacsgate_lockout_refusals_total", &[], || {
        let wrong = "mallory:wrong-password";
        let codes: Vec<String> = (0..4).map(|_| get(&["-u", wrong], "/system")).collect();
        assert!(codes.iter().any(|c| c == "429"), "{codes:?}");
    });

    // A connection that never says anything is open until it is closed.
    let held = TcpStream::connect(("127.0.0.1", https)).unwrap();
    let https_open = [("listener", "https")];
    wait_until("the open connection gauge", Duration::from_secs(10), || {
        value(&scrape(admin), "pacsgate_open_connections", &https_open) >= 1.0
    });
    drop(held);
    wait_until("the gauge to fall back", Duration::from_secs(20), || {
        value(&scrape(admin), "pacsgate_open_connections", &https_open) == 0.0
    });

    // DICOM: an accepted association with a C-ECHO, a rejected one, a refused C-STORE.
    let accepted = [("listener", "dicom"), ("result", "accepted")];
    moves(
        admin,
        "pacsgate_dicom_associations_total",
        &accepted,
        || {
            let (st, out) = dcmtk(
                ECHOSCU,
                dicom,
                &dcmtk_args("CT1", "ORTHANC", &ca.path, None),
                &[],
            );
            assert!(st.success(), "{out}");
        },
    );
    let dicom_ok = [("listener", "dicom"), ("result", "ok"), ("version", "1.3")];
    assert!(value(&scrape(admin), "pacsgate_tls_handshakes_total", &dicom_ok) >= 1.0);
    assert!(
        value(
            &scrape(admin),
            "pacsgate_dimse_commands_total",
            &[("command", "C-ECHO")]
        ) >= 1.0
    );
    let rejected = [("result", "rejected"), ("reason", "called_ae_unknown")];
    moves(
        admin,
        "pacsgate_dicom_associations_total",
        &rejected,
        || {
            dcmtk(
                ECHOSCU,
                dicom,
                &dcmtk_args("CT1", "NOTPACS", &ca.path, None),
                &[],
            );
        },
    );
    let file = support::pydicom_file("CT_small.dcm");
    let dicom_in = [("listener", "dicom"), ("direction", "in")];
    moves(admin, "pacsgate_relayed_bytes_total", &dicom_in, || {
        let args = dcmtk_args("CT1", "ORTHANC", &ca.path, None);
        let (st, out) = dcmtk(STORESCU, dicom, &args, std::slice::from_ref(&file));
        assert!(st.success(), "{out}");
    });
    moves(
        admin,
        "pacsgate_dimse_refusals_total",
        &[("command", "C-STORE")],
        || {
            let args = dcmtk_args("VIEWER", "ORTHANC", &ca.path, None);
            dcmtk(STORESCU, dicom, &args, std::slice::from_ref(&file));
        },
    );

    // Reloads, and the certificate's not-after.
    moves(
        admin,
        "pacsgate_reloads_total",
        &[("what", "config"), ("result", "ok")],
        || {
            gateway.proc.signal("HUP");
            gateway
                .proc
                .wait_for_output("configuration reloaded", Duration::from_secs(20));
        },
    );
    let text = scrape(admin);
    let cert = server.cert.display().to_string();
    let not_after = value(
        &text,
        "pacsgate_certificate_not_after_seconds",
        &[("cert", &cert)],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(not_after > now, "{text}");

    // The PACS goes away: upstream errors, and /readyz says so.
    let mut orthanc = orthanc;
    orthanc.proc.signal("TERM");
    orthanc.proc.wait_exit(Duration::from_secs(30));
    moves(
        admin,
        "pacsgate_upstream_errors_total",
        &[("listener", "https")],
        || {
            assert_eq!(get(&["-u", &creds], "/system"), "502");
        },
    );
    moves(
        admin,
        "pacsgate_upstream_errors_total",
        &[("listener", "dicom")],
        || {
            dcmtk(
                ECHOSCU,
                dicom,
                &dcmtk_args("CT1", "ORTHANC", &ca.path, None),
                &[],
            );
        },
    );
    wait_until("/readyz to turn 503", Duration::from_secs(10), || {
        http_get(admin, "/readyz").is_some_and(|(c, _)| c == 503)
    });
    let (_, body) = http_get(admin, "/readyz").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("fail pacs_http"), "{body}");
    assert!(body.contains("fail pacs_dicom"), "{body}");
    assert!(body.contains("ok listeners"), "{body}");
    assert_eq!(http_get(admin, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(admin, "/other").map(|r| r.0), Some(404));
    let post = format!("http://127.0.0.1:{admin}/metrics");
    assert_eq!(http_status(&["-X", "POST", &post]).1, "405");
}

#[test]
fn a_remote_admin_listener_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let (port, https) = (free_port(), free_port());
    let base = format!(
        "{}[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{https}\"\n[dicom]\nenabled = false\n",
        tls_section(&server, ""),
    );
    // Never on a public listener's port (here: the HTTPS one).
    let shared = format!("{base}[admin]\nlisten = \"127.0.0.1:{https}\"\n");
    let (code, out) = run_expecting_exit(dir.path(), &shared, "check");
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("admin.listen") && out.contains("public"),
        "{out}"
    );
    let remote = format!("{base}[admin]\nlisten = \"0.0.0.0:{port}\"\n");
    let (code, out) = run_expecting_exit(dir.path(), &remote, "check");
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("admin.listen") && out.contains("allow_remote"),
        "{out}"
    );
    let allowed = format!("{remote}allow_remote = true\n");
    let (code, out) = run_expecting_exit(dir.path(), &allowed, "check");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("admin: 0.0.0.0:{port}")), "{out}");
}
