//! The gateway started in-process on listeners the test binds (`127.0.0.1:0`, no racy free
//! port): `Gateway::run(listeners, shutdown)` serves HTTPS and DICOM TLS in front of a real
//! Orthanc and returns once the shutdown future resolves; a listener the configuration
//! enables but the caller did not hand over (or the reverse) is refused.

mod support;

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::time::{Duration, Instant};

use pacsgate::app::{Gateway, Listeners, MissingListener};
use pacsgate::config::Config;
use support::dicom::{dcmtk, dcmtk_args, ECHOSCU};
use support::gateway::{http_status, tls_section};
use support::orthanc::Orthanc;
use support::pki::{Ca, Leaf};
use support::policy::hash;

const PASSWORD: &str = "in-process-test-password";

/// A listener on an ephemeral loopback port, ready for tokio.
fn ephemeral() -> (StdListener, u16) {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.set_nonblocking(true).expect("nonblocking");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

/// HTTPS and DICOM in front of `orthanc`; the `listen` addresses are placeholders that
/// `run` does not use (port 9 is discard: nothing of ours may appear there).
fn config(dir: &Path, server: &Leaf, orthanc: &Orthanc) -> Config {
    let toml = format!(
        "{}[http]\nlisten = \"127.0.0.1:9\"\nupstream = \"http://127.0.0.1:{}\"\n\
         [users.admin]\npassword_hash = \"{}\"\n[[http.rules]]\nusers = [\"admin\"]\npaths = [\"/**\"]\n\
         [dicom]\nlisten = \"127.0.0.1:9\"\nupstream = \"127.0.0.1:{}\"\ncalled_aet = \"ORTHANC\"\n",
        tls_section(server, ""),
        orthanc.http_port,
        hash(PASSWORD),
        orthanc.dicom_port,
    );
    Config::parse(&toml, dir).expect("valid configuration")
}

#[test]
fn serves_https_and_dicom_on_handed_listeners_until_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "localhost");
    let orthanc = Orthanc::start(d, serde_json::json!({}));
    let gateway = Gateway::prepare(config(d, &server, &orthanc)).expect("prepare");

    let (http, https_port) = ephemeral();
    let (dicom, dicom_port) = ephemeral();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listeners = Listeners {
                http: Some(tokio::net::TcpListener::from_std(http).expect("http")),
                dicom: Some(tokio::net::TcpListener::from_std(dicom).expect("dicom")),
                ..Listeners::default()
            };
            gateway
                .run(listeners, async {
                    let _ = stopped.await;
                })
                .await
        })
    });

    // The sockets were listening before `run` started: no readiness wait is needed, the
    // kernel queues the first connections.
    let cacert = ca.path.display().to_string();
    let url = format!("https://localhost:{https_port}/system");
    let (_, code, err) = http_status(&["--cacert", &cacert, &url]);
    assert_eq!(code, "401", "{err}");
    let creds = format!("admin:{PASSWORD}");
    let (_, code, err) = http_status(&["--cacert", &cacert, "-u", &creds, &url]);
    assert_eq!(code, "200", "{err}");

    let args = dcmtk_args("ANYSCU", "ORTHANC", &ca.path, None);
    let (status, out) = dcmtk(ECHOSCU, dicom_port, &args, &[]);
    assert!(status.success(), "{out}");

    let asked = Instant::now();
    stop.send(()).expect("the gateway is running");
    let result = served.join().expect("the serving thread does not panic");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "run returns within the shutdown grace: {:?}",
        asked.elapsed()
    );
    let (_, code, _) = http_status(&["--max-time", "5", "--cacert", &cacert, &url]);
    assert_eq!(code, "000", "nothing answers once run has returned");
}

#[test]
fn a_configured_listener_not_handed_over_or_an_extra_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "localhost");
    let orthanc = Orthanc::start(d, serde_json::json!({}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tokio_listener = || {
            let (l, _) = ephemeral();
            tokio::net::TcpListener::from_std(l).unwrap()
        };
        let gateway = Gateway::prepare(config(d, &server, &orthanc)).unwrap();
        let only_http = Listeners {
            http: Some(tokio_listener()),
            ..Listeners::default()
        };
        let err = gateway.with_listeners(only_http).err();
        assert!(matches!(err, Some(MissingListener("dicom"))), "{err:?}");

        let gateway = Gateway::prepare(config(d, &server, &orthanc)).unwrap();
        let with_admin = Listeners {
            http: Some(tokio_listener()),
            dicom: Some(tokio_listener()),
            admin: Some(tokio_listener()),
            ..Listeners::default()
        };
        let err = gateway.with_listeners(with_admin).err();
        assert!(matches!(err, Some(MissingListener("admin"))), "{err:?}");

        let gateway = Gateway::prepare(config(d, &server, &orthanc)).unwrap();
        let exact = Listeners {
            http: Some(tokio_listener()),
            dicom: Some(tokio_listener()),
            ..Listeners::default()
        };
        assert!(gateway.with_listeners(exact).is_ok());
    });
}
