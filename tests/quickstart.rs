//! The quickstart as shipped (`deploy/quickstart.sh` running `config.toml`, on free ports):
//! without credentials the gateway answers 401, with the printed ones 200; Orthanc itself
//! runs with `AuthenticationEnabled` and an account only the gateway holds, so a request
//! Orthanc makes to itself on a caller's behalf (a peer pointing at its own loopback API,
//! issue 9 finding 2) is refused by Orthanc as well.

mod support;

use std::process::Command;

use support::pydicom_file;
use support::quickstart::Quickstart;

/// curl straight to Orthanc's REST port (no gateway): (status, body).
fn orthanc(q: &Quickstart, creds: Option<&str>, args: &[&str], path: &str) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"]);
    if let Some(c) = creds {
        cmd.args(["-u", c]);
    }
    cmd.args(args)
        .arg(format!("http://127.0.0.1:{}{path}", q.orthanc_http_port));
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[test]
fn quickstart_requires_credentials_at_the_gateway_and_at_orthanc() {
    let q = Quickstart::start();
    let out = q.output();
    assert!(out.contains("http authentication: required"), "{out}");
    assert!(q.admin.len() > "admin:".len() + 20, "{}", q.admin);

    // The gateway: 401 without credentials, 200 with the printed ones.
    assert_eq!(q.status(&[], "/patients"), "401");
    assert_eq!(
        q.status(&["-u", "admin:not-the-password"], "/patients"),
        "401"
    );
    assert_eq!(q.status(&["-u", &q.admin], "/patients"), "200");
    let dicom = pydicom_file("CT_small.dcm").display().to_string();
    let upload = format!("@{dicom}");
    assert_eq!(
        q.status(&["-u", &q.admin, "--data-binary", &upload], "/instances"),
        "200"
    );

    // Orthanc: only the gateway's account gets in.
    let pacs = q.orthanc_credentials();
    assert!(pacs.starts_with("pacsgate:"));
    assert_eq!(orthanc(&q, None, &[], "/patients").0, "401");
    assert_eq!(orthanc(&q, Some(&q.admin), &[], "/patients").0, "401");
    let (code, body) = orthanc(&q, Some(&pacs), &[], "/patients");
    assert_eq!(code, "200");
    assert!(body.contains('"'), "one patient uploaded: {body}");

    // Confused deputy: a peer whose URL is Orthanc's own API (the path of the
    // execute-script# and export# attacks). Made straight at Orthanc with the gateway's
    // account, i.e. by a caller who got through the gateway; the self-call carries no
    // account, and Orthanc refuses it.
    let count = || {
        let (code, body) = orthanc(&q, Some(&pacs), &[], "/instances");
        assert_eq!(code, "200");
        serde_json::from_str::<Vec<String>>(&body).unwrap().len()
    };
    let before = count();
    let self_url = format!("http://127.0.0.1:{}/", q.orthanc_http_port);
    let peer = |id: &str, extra: &str| {
        let json = format!("{{\"Url\": {self_url:?}{extra}}}");
        let path = format!("/peers/{id}");
        let (code, body) = orthanc(&q, Some(&pacs), &["-X", "PUT", "-d", &json], &path);
        assert_eq!(code, "200", "PUT {path}: {body}");
    };
    let mr = format!("@{}", pydicom_file("MR_small.dcm").display());
    let store = |id: &str| {
        let path = format!("/peers/{id}/store-straight");
        orthanc(&q, Some(&pacs), &["--data-binary", &mr], &path).0
    };
    peer("self", "");
    assert_ne!(store("self"), "200");
    assert_eq!(
        count(),
        before,
        "Orthanc accepted its own request without an account"
    );
    // Control: the same self-call carrying Orthanc's account goes through, so the refusal
    // above is AuthenticationEnabled at work, not a broken request.
    let (user, password) = pacs.split_once(':').unwrap();
    peer(
        "self-with-account",
        &format!(", \"Username\": {user:?}, \"Password\": {password:?}"),
    );
    assert_eq!(store("self-with-account"), "200");
    assert_eq!(count(), before + 1, "control did not store");
}

#[test]
fn the_quickstart_gateway_config_is_config_toml_plus_orthancs_account() {
    let q = Quickstart::start();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let used = std::fs::read_to_string(q.state.path().join("pacsgate.toml")).unwrap();
    let changed: Vec<(&str, &str)> = shipped
        .lines()
        .zip(used.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(shipped.lines().count(), used.lines().count());
    for (a, b) in &changed {
        assert!(
            b.starts_with("upstream_credentials_file = ")
                || b.starts_with("listen = ")
                || b.starts_with("upstream = "),
            "unexpected change {a:?} -> {b:?}"
        );
    }
    assert!(changed
        .iter()
        .any(|(_, b)| b.starts_with("upstream_credentials_file")));
    // config.toml itself stays secure as shipped: no pass-through, no users.
    assert!(shipped.contains("\nauthentication = \"required\""));
    assert!(!shipped.contains("\n[users."));
}
