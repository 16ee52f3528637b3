//! A real browser through the quickstart gateway (issue 9 item 10): headless Chromium
//! (Debian's `chromium`) opens Orthanc Explorer with the generated credentials and sees
//! the patient the test uploaded; a page from another origin (a local HTTP server) that
//! auto-submits a form POST to the gateway is refused by the gateway's CSRF check, also
//! when the browser holds the victim's credentials, and the request never reaches Orthanc.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::{wait_until, Proc};
use support::pydicom_file;
use support::quickstart::Quickstart;

const CHROMIUM: &str = "/usr/bin/chromium";
/// PatientName of pydicom's CT_small.dcm.
const PATIENT: &str = "CompressedSamples^CT1";
const CSRF_BODY: &str = "403 Forbidden: cross-site request";

/// Chromium's flags: a fresh profile and nothing that talks to the network on its own.
fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--ignore-certificate-errors",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// `--dump-dom` of `url` after the page settled (virtual time: network loads hold it),
/// repeated until `done(dom)` or 60 s; returns the last DOM.
fn dump_dom_until(dir: &Path, url: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let profile = dir.join(format!("profile-{attempt}"));
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "60", CHROMIUM])
            .args(chromium_args(&profile))
            .args(["--virtual-time-budget=15000", "--dump-dom", url]);
        let out = cmd.output().expect("chromium is needed; run tests/run.sh");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if done(&dom) || Instant::now() > deadline {
            return dom;
        }
    }
}

/// A one-page HTTP server on 127.0.0.1 (another origin than the gateway) serving `page`.
fn attacker_site(page: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

fn upload_patient(q: &Quickstart) {
    let file = format!("@{}", pydicom_file("CT_small.dcm").display());
    assert_eq!(
        q.status(&["-u", &q.admin, "--data-binary", &file], "/instances"),
        "200"
    );
}

/// The gateway's audit records (the quickstart has no audit file: they go to its log).
fn audit(q: &Quickstart) -> Vec<serde_json::Value> {
    q.output()
        .lines()
        .filter_map(|l| l.find("{\"time\"").map(|i| &l[i..]))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

#[test]
fn orthanc_explorer_lists_the_uploaded_patient_through_the_gateway() {
    let q = Quickstart::start();
    upload_patient(&q);
    let dir = tempfile::tempdir().unwrap();
    let (user, password) = q.admin.split_once(':').unwrap();
    let explorer = format!(
        "https://{user}:{password}@localhost:{}/app/explorer.html#find-patients",
        q.https_port
    );
    let dom = dump_dom_until(dir.path(), &explorer, |d| d.contains(PATIENT));
    assert!(
        dom.contains(PATIENT),
        "Explorer did not list the patient:\n{dom}"
    );
}

#[test]
fn a_cross_site_form_post_is_refused_even_with_the_victims_credentials() {
    let q = Quickstart::start();
    upload_patient(&q);
    let dir = tempfile::tempdir().unwrap();
    // A state-changing request outside the deny set, so only CSRF can refuse it.
    let target = q.url("/instances");
    let page = format!(
        "<!doctype html><html><body><form id=f method=POST action={target:?}>\
         <input name=x value=y></form><script>document.getElementById('f').submit()</script>\
         </body></html>"
    );
    let attacker = format!("http://127.0.0.1:{}/", attacker_site(page));

    // A browser without the credentials: the gateway's 403 body is what it shows.
    let dom = dump_dom_until(dir.path(), &attacker, |d| d.contains("403"));
    assert!(dom.contains(CSRF_BODY), "{dom}");

    // The victim is logged in (Explorer open, Basic credentials cached), then opens the
    // attacker's page in a second tab: the POST carries the victim's credentials.
    let profile = dir.path().join("victim");
    let (user, password) = q.admin.split_once(':').unwrap();
    let explorer = format!(
        "https://{user}:{password}@localhost:{}/app/explorer.html#find-patients",
        q.https_port
    );
    let mut cmd = Command::new(CHROMIUM);
    cmd.args(chromium_args(&profile))
        .arg("--remote-debugging-port=0")
        .arg(&explorer)
        .process_group(0);
    let browser = Browser(Proc::spawn(
        "chromium",
        cmd,
        &dir.path().join("chromium.log"),
    ));
    let listed = |q: &Quickstart| {
        audit(q)
            .iter()
            .any(|r| r["path"] == "/patients" && r["user"] == "admin" && r["status"] == 200)
    };
    wait_until("Explorer to list patients", Duration::from_secs(60), || {
        listed(&q)
    });
    let port_file = profile.join("DevToolsActivePort");
    wait_until("the DevTools port", Duration::from_secs(30), || {
        std::fs::read_to_string(&port_file).is_ok_and(|s| s.lines().count() >= 2)
    });
    let devtools = std::fs::read_to_string(&port_file).unwrap();
    let devtools = devtools.lines().next().unwrap().trim().to_string();
    let is_attack = |r: &serde_json::Value| r["method"] == "POST" && r["path"] == "/instances";
    let with_credentials = |q: &Quickstart| -> Vec<serde_json::Value> {
        audit(q)
            .into_iter()
            .filter(|r| is_attack(r) && r["user"] == "admin")
            .collect()
    };
    // So far only the test's own upload (curl: no Origin, admitted).
    assert_eq!(with_credentials(&q).len(), 1);
    let (ok, _, err) = support::gateway::curl(&[
        "-X",
        "PUT",
        &format!("http://127.0.0.1:{devtools}/json/new?{attacker}"),
    ]);
    assert!(ok.success(), "{err}");
    wait_until("the cross-site POST", Duration::from_secs(60), || {
        with_credentials(&q).len() >= 2
    });
    let record = with_credentials(&q).pop().unwrap();
    assert_eq!(record["status"], 403, "{record}");
    assert_eq!(record["denied"], "cross-site request", "{record}");
    // Every form POST was refused at the gateway: none was forwarded to Orthanc.
    let admitted = audit(&q)
        .iter()
        .filter(|r| is_attack(r) && r["denied"].is_null())
        .count();
    assert_eq!(admitted, 1, "only the test's upload reached Orthanc");
    drop(browser);
}

/// Chromium in its own process group: the browser and its helper processes end together.
struct Browser(Proc);

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.pid());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
