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
