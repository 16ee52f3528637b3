//! What the PACS learns about the caller: the gateway's own account for the PACS (so
//! Orthanc can keep `AuthenticationEnabled`) instead of the client's credentials, and the
//! verified user in `X-Forwarded-User`, which clients cannot set themselves. Users can be
//! identified by their client certificate instead of a password.

mod support;

use support::backend::Backend;
use support::gateway::{curl, http_status, tls_section, Gateway};
use support::pki::{fingerprint, Ca};
use support::policy::{hash, USER_PW};
use support::process::free_port;

#[test]
fn pacs_gets_its_own_credentials_and_the_verified_user() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let client = ca.client(dir.path(), "site-b.example");
    let creds = dir.path().join("pacs.credentials");
    std::fs::write(&creds, "pacs:pacs-pw\n").unwrap();
    let port = free_port();
    let toml = format!(
        r#"{tls}[dicom]
enabled = false
[http]
listen = "127.0.0.1:{port}"
upstream = "http://127.0.0.1:{up}"
upstream_credentials_file = {creds:?}
[http.response_headers]
x-frame-options = "DENY"
content-security-policy = ""
[users.user]
password_hash = "{hash}"
[users.site-b]
certificate = "{fp}"
[[http.rules]]
name = "read"
users = ["user", "site-b"]
methods = ["GET"]
paths = ["/echo"]
"#,
        tls = tls_section(
            &server,
            &format!("client_ca = {:?}", ca.path.display().to_string())
        ),
        up = backend.port(),
        creds = creds.display().to_string(),
        hash = hash(USER_PW),
        fp = fingerprint(&client.cert),
    );
    let _gateway = Gateway::start(dir.path(), &toml);
    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{port}/echo");

    let user = format!("user:{USER_PW}");
    let (ok, body, err) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &user,
        "-H",
        "X-Forwarded-User: admin",
        "-D",
        "-",
        &url,
    ]);
    assert!(ok.success(), "{err}");
    let lower = body.to_ascii_lowercase();
    // base64("pacs:pacs-pw")
    assert!(
        lower.contains("authorization: basic cgfjczpwywnzlxb3\n"),
        "{body}"
    );
    assert!(lower.contains("x-forwarded-user: user\n"), "{body}");
    assert!(!lower.contains("x-forwarded-user: admin"), "{body}");
    assert_eq!(lower.matches("authorization:").count(), 1, "{body}");
    assert!(lower.contains("x-frame-options: deny"), "{body}");
    assert!(!lower.contains("content-security-policy"), "{body}");

    // Headers the client names in `Connection` are hop-by-hop for the client's hop only:
    // they must not remove the headers the gateway sets for the PACS.
    let (ok, body, err) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &user,
        "-H",
        "Connection: keep-alive, X-Forwarded-User, Authorization, X-Forwarded-For",
        &url,
    ]);
    assert!(ok.success(), "{err}");
    let lower = body.to_ascii_lowercase();
    assert!(
        lower.contains("authorization: basic cgfjczpwywnzlxb3\n"),
        "{body}"
    );
    assert!(lower.contains("x-forwarded-user: user\n"), "{body}");
    assert!(lower.contains("x-forwarded-for: 127.0.0.1\n"), "{body}");

    // The client certificate identifies site-b: no password needed.
    let (ok, body, err) = curl(&[
        "--cacert",
        &cacert,
        "--cert",
        client.cert.to_str().unwrap(),
        "--key",
        client.key.to_str().unwrap(),
        &url,
    ]);
    assert!(ok.success(), "{err}");
    assert!(
        body.to_ascii_lowercase()
            .contains("x-forwarded-user: site-b\n"),
        "{body}"
    );

    // Neither credentials nor certificate: 401, and the backend saw only the three above.
    let (_, code, _) = http_status(&["--cacert", &cacert, &url]);
    assert_eq!(code, "401");
    assert_eq!(backend.request_count(), 3);
}

#[test]
fn without_users_authorization_passes_through_and_the_deny_set_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start();
    let ca = Ca::new(dir.path(), "Test CA");
    let server = ca.server(dir.path(), "server");
    let port = free_port();
    let toml = format!(
        "{}[dicom]\nenabled = false\n[http]\nauthentication = \"none\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{}\"\n",
        tls_section(&server, ""),
        backend.port()
    );
    let gateway = Gateway::start(dir.path(), &toml);
    assert!(
        gateway
            .log()
            .contains("http.authentication = \"none\" and no [[http.rules]] configured"),
        "{}",
        gateway.log()
    );
    let cacert = ca.path.display().to_string();
    let base = format!("https://localhost:{port}");
    let (ok, body, err) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        "orthanc:orthanc",
        "-H",
        "X-Forwarded-User: admin",
        &format!("{base}/echo"),
    ]);
    assert!(ok.success(), "{err}");
    let lower = body.to_ascii_lowercase();
    assert!(
        lower.contains("authorization: basic b3j0agfuyzpvcnroyw5j\n"),
        "{body}"
    );
    assert!(!lower.contains("x-forwarded-user"), "{body}");
    let (_, code, _) = http_status(&[
        "--cacert",
        &cacert,
        "-d",
        "print(1)",
        &format!("{base}//tools/./execute-script/"),
    ]);
    assert_eq!(code, "403");
    assert_eq!(backend.request_count(), 1);
}
