//! `POST /tools/execute-script` (arbitrary Lua on the PACS host) is refused for everyone,
//! admin included, in every spelling we know, and only an explicit `allow_dangerous` entry
//! opens it. Orthanc runs with Lua enabled and `--verbose`, so a request that got through
//! would both leave a marker file and appear in Orthanc's request log.

mod support;

use std::path::Path;

use support::policy::{sample_policy, Site, ADMIN_PW, USER_PW};

/// Lua that proves it ran by creating `marker`.
fn payload(marker: &Path) -> String {
    format!(
        "local f = io.open('{}', 'w') f:write('ran') f:close() print('ran')",
        marker.display()
    )
}

#[test]
fn execute_script_is_refused_in_every_spelling_for_every_user() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    // Control: the same payload sent straight to Orthanc does run.
    let control = site.dir().join("control-marker");
    let direct = format!(
        "http://127.0.0.1:{}/tools/execute-script",
        site.orthanc.http_port
    );
    let (ok, out, err) = support::gateway::curl(&["-d", &payload(&control), &direct]);
    assert!(
        ok.success() && control.exists(),
        "control failed: {out} {err}"
    );
    let requests_before = site.orthanc_requests().len();

    let marker = site.dir().join("marker");
    let lua = payload(&marker);
    let port = site.port;
    let abs = |p: &str| format!("https://localhost:{port}{p}");
    let admin = format!("admin:{ADMIN_PW}");
    let spellings: Vec<Vec<String>> = vec![
        vec![site.url("/tools/execute-script")],
        vec![site.url("//tools/execute-script")],
        vec![site.url("/tools//execute-script")],
        vec![site.url("/tools/./execute-script")],
        vec![site.url("/tools/execute-script/")],
        vec![site.url("/tools/execute-script/.")],
        vec![site.url("/tools/x/../execute-script")],
        vec![site.url("/tools%2Fexecute-script")],
        vec![site.url("/tools%2fexecute-script")],
        vec![site.url("/tools/execute-script%2F")],
        vec![site.url("/tools%5Cexecute-script")],
        vec![site.url("/tools/%2e/execute-script")],
        vec![site.url("/tools/%2E%2E/tools/execute-script")],
        vec![site.url("/tools/execute%2Dscript")],
        vec![site.url("/%74%6f%6f%6c%73/%65xecute-script")],
        vec![site.url("/tools/%252e/execute-script")],
        vec![site.url("/tools/%2565xecute-script")],
        vec![site.url("/TOOLS/Execute-Script")],
        vec![site.url("/tools/execute-script%00")],
        vec![site.url("/tools/execute-script%C0%AF")],
        vec!["--http2".into(), site.url("/tools/execute-script")],
        vec!["--http2".into(), site.url("//tools/./Execute-Script/")],
        // Absolute-form exists only in HTTP/1.1 (RFC 9112 §3.2.2).
        vec![
            "--http1.1".into(),
            "--request-target".into(),
            abs("/tools/execute-script"),
            site.url("/"),
        ],
        // Absolute-form exists only in HTTP/1.1 (RFC 9112 §3.2.2).
        vec![
            "--http1.1".into(),
            "--request-target".into(),
            abs("/x/../tools/execute-script"),
            site.url("/"),
        ],
        vec![
            "--request-target".into(),
            "/tools\\execute-script".into(),
            site.url("/"),
        ],
        vec![
            "-X".into(),
            "post".into(),
            site.url("/tools/execute-script"),
        ],
        vec![
            "-X".into(),
            "GET".into(),
            "-H".into(),
            "X-HTTP-Method-Override: POST".into(),
            site.url("/tools/execute-script"),
        ],
        vec![
            "-X".into(),
            "PUT".into(),
            "-H".into(),
            "X-HTTP-Method: POST".into(),
            site.url("/tools/execute-script"),
        ],
        vec![
            "-X".into(),
            "GET".into(),
            site.url("/tools/execute-script?_method=POST"),
        ],
        vec![
            "-H".into(),
            "X-HTTP-Method-Override: POST".into(),
            site.url("/tools/find"),
        ],
    ];
    let mut results = Vec::new();
    for spelling in &spellings {
        let mut args: Vec<&str> = vec!["--path-as-is", "-u", &admin, "-d", &lua];
        args.extend(spelling.iter().map(String::as_str));
        let code = site.status(&args);
        results.push((spelling.clone(), code));
    }
    for (spelling, code) in &results {
        let allowed_find = spelling.iter().any(|s| s.ends_with("/tools/find"));
        if allowed_find {
            // The override header was stripped: Orthanc saw a plain POST /tools/find.
            assert!(*code == 200 || *code == 400, "{spelling:?}: {code}");
        } else {
            assert!(
                *code == 400 || *code == 403,
                "{spelling:?} got {code}: {results:?}"
            );
        }
    }
    for (who, creds) in [
        ("user", format!("user:{USER_PW}")),
        ("anonymous", String::new()),
    ] {
        let mut args = vec!["-d", &lua];
        if !creds.is_empty() {
            args.extend(["-u", creds.as_str()]);
        }
        let url = site.url("/tools/execute-script");
        args.push(&url);
        assert_eq!(site.status(&args), 403, "{who}");
    }

    assert!(!marker.exists(), "a spelling of execute-script ran Lua");
    let after: Vec<String> = site.orthanc_requests()[requests_before..].to_vec();
    assert!(
        after
            .iter()
            .all(|r| !r.to_ascii_lowercase().contains("execute")),
        "reached Orthanc: {after:?}"
    );
    assert!(after.iter().all(|r| r == "POST /tools/find"), "{after:?}");
}

#[test]
fn allow_dangerous_opens_execute_script_and_nothing_else() {
    let site = Site::start(
        serde_json::json!({}),
        "allow_dangerous = [\"execute-script\"]",
        &sample_policy(),
    );
    let marker = site.dir().join("marker");
    let admin = format!("admin:{ADMIN_PW}");
    let url = site.url("/tools/execute-script");
    assert_eq!(
        site.status(&["-u", &admin, "-d", &payload(&marker), &url]),
        200
    );
    assert!(marker.exists());
    // Rules still apply to an opened endpoint: user may only GET.
    let user = format!("user:{USER_PW}");
    assert_eq!(site.status(&["-u", &user, "-d", "print(1)", &url]), 403);
    // The other entries stay closed.
    let export = site.url("/instances/abc/export");
    assert_eq!(site.status(&["-u", &admin, "-d", "/tmp/x", &export]), 403);
    assert_eq!(site.status(&["-u", &admin, &site.url("/webdav/")]), 403);
}

/// Orthanc as a confused deputy: a peer whose URL is Orthanc's own loopback API turns
/// `POST /peers/x/store-straight` into `POST /tools/execute-script`. Straight to Orthanc
/// (the control) the Lua runs; through the gateway, defining or using the peer is refused
/// for the admin too, and so are the other endpoints that make Orthanc send requests or
/// change its running configuration.
#[test]
fn orthanc_cannot_be_made_a_confused_deputy() {
    let site = Site::start(serde_json::json!({}), "", &sample_policy());
    let orthanc = format!("http://127.0.0.1:{}", site.orthanc.http_port);
    let peer = format!(r#"{{"Url":"{orthanc}/tools/execute-script#"}}"#);
    let control = site.dir().join("control-marker");
    let (ok, _, err) =
        support::gateway::curl(&["-X", "PUT", "-d", &peer, &format!("{orthanc}/peers/x")]);
    assert!(ok.success(), "{err}");
    let (ok, out, err) = support::gateway::curl(&[
        "-d",
        &payload(&control),
        &format!("{orthanc}/peers/x/store-straight"),
    ]);
    assert!(
        ok.success() && control.exists(),
        "control: the deputy did not run the Lua: {out} {err}"
    );
    let before = site.orthanc_requests().len();

    let marker = site.dir().join("marker");
    let admin = format!("admin:{ADMIN_PW}");
    let refused: Vec<(&str, String, String)> = vec![
        ("PUT", "/peers/y".into(), peer.clone()),
        ("POST", "/peers/x/store-straight".into(), payload(&marker)),
        ("POST", "/peers/x/store".into(), "[]".into()),
        ("GET", "/peers".into(), String::new()),
        (
            "PUT",
            "/modalities/evil".into(),
            r#"{"AET":"EVIL","Host":"127.0.0.1","Port":9}"#.into(),
        ),
        ("POST", "/modalities/evil/echo".into(), "{}".into()),
        (
            "POST",
            "/tools/dicom-echo".into(),
            r#"{"AET":"X","Host":"127.0.0.1","Port":22}"#.into(),
        ),
        ("PUT", "/dicom-web/servers/x".into(), peer.clone()),
        ("POST", "/tools/reset".into(), String::new()),
        ("POST", "/tools/shutdown".into(), String::new()),
        ("PUT", "/tools/log-level".into(), "trace".into()),
        ("PUT", "/tools/log-level-http".into(), "trace".into()),
        ("PUT", "/tools/metrics".into(), "0".into()),
        ("PUT", "/tools/default-encoding".into(), "Utf8".into()),
        (
            "PUT",
            "/tools/accepted-transfer-syntaxes".into(),
            "[]".into(),
        ),
        (
            "PUT",
            "/tools/unknown-sop-class-accepted".into(),
            "1".into(),
        ),
    ];
    for (method, path, body) in &refused {
        let url = site.url(path);
        let mut args = vec!["-u", admin.as_str(), "-X", method, &url];
        if !body.is_empty() {
            args.extend(["-d", body.as_str()]);
        }
        assert_eq!(site.status(&args), 403, "{method} {path}");
    }
    assert!(!marker.exists(), "the deputy ran Lua through the gateway");
    let after = site.orthanc_requests()[before..].to_vec();
    assert!(after.is_empty(), "reached Orthanc: {after:?}");
    let denied: Vec<String> = site
        .audit()
        .iter()
        .filter_map(|r| r["denied"].as_str().map(str::to_string))
        .collect();
    for id in ["peers", "modalities", "dicom-web-servers", "server-admin"] {
        assert!(
            denied
                .iter()
                .any(|d| d == &format!("built-in deny set: {id}")),
            "{id}: {denied:?}"
        );
    }
}
