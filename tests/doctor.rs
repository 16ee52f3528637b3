//! `pacsgate doctor` against real Orthanc 1.10.1 processes: a deliberately misconfigured
//! one (every misconfiguration flagged, exit 1), a half-configured one (plugin configured
//! but not loaded, authentication without gateway credentials) and a correct one behind
//! a correct gateway (no FAIL, exit 0). Orthanc's JSON is written with comments, as
//! operators write it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::gateway::binary;
use support::orthanc::Orthanc;
use support::pki::{Ca, Leaf};
use support::policy::{hash, ADMIN_PW};
use support::process::{free_port, run};

/// Run doctor; (exit code, output lines).
fn doctor(config: &Path, orthanc_json: &Path) -> (Option<i32>, Vec<String>) {
    let mut cmd = Command::new(binary());
    cmd.arg("doctor")
        .arg("--config")
        .arg(config)
        .arg("--orthanc-config")
        .arg(orthanc_json);
    let (status, out) = run(cmd, Duration::from_secs(60));
    (status.code(), out.lines().map(str::to_string).collect())
}

/// The line of `check`; panics with the whole output if there is none.
fn line<'a>(lines: &'a [String], check: &str) -> &'a str {
    let prefix = format!(" {check}");
    lines
        .iter()
        .find(|l| l[4..].starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {check}:\n{}", lines.join("\n")))
}

fn assert_level(lines: &[String], check: &str, level: &str) {
    let l = line(lines, check);
    assert!(l.starts_with(level), "{check}: expected {level}, got: {l}");
    assert!(l.contains(" -> "), "{l}");
}

/// Orthanc's own file, as Orthanc read it, rewritten with comments doctor must strip.
fn commented_copy(orthanc: &Orthanc) -> PathBuf {
    let text = std::fs::read_to_string(orthanc.dir.join("orthanc.json")).unwrap();
    let commented = format!(
        "// Orthanc configuration\n/* written by the test,\n   with comments */\n{}",
        text.replacen('{', "{ // options follow\n", 1)
    );
    let path = orthanc.dir.join("orthanc-commented.json");
    std::fs::write(&path, commented).unwrap();
    path
}

fn gateway_config(dir: &Path, server: &Leaf, http: &str, orthanc: &Orthanc) -> PathBuf {
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[http]\nupstream = \"http://127.0.0.1:{}\"\n{http}\n[dicom]\nlisten = \"127.0.0.1:{}\"\nupstream = \"127.0.0.1:{}\"\n",
        server.cert.display().to_string(),
        server.key.display().to_string(),
        orthanc.http_port,
        free_port(),
        orthanc.dicom_port,
    );
    let path = dir.join("pacsgate.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_misconfigured_orthanc_and_gateway_are_flagged_check_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("master.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    chmod(&key, 0o644);
    // No LD_PRELOAD shim: Orthanc binds 0.0.0.0, as 1.10.1 does on a real machine.
    let orthanc = Orthanc::start_with_env(
        d,
        serde_json::json!({
            "RemoteAccessAllowed": true,
            "AuthenticationEnabled": false,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowEcho": true,
            "DicomCheckCalledAet": false,
            "WebDavEnabled": true,
            "ExecuteLuaEnabled": true,
            "MaximumStorageCacheSize": 128,
            "Plugins": ["/usr/lib/pacsgate/missing/libpacsgate_orthanc_storage.so"],
            "PacsgateStorage": {"StorageEncryption": {"Enable": true, "MasterKey": [1, key]}},
        }),
        &[("LD_PRELOAD", "")],
    );
    let ca = Ca::new(d, "Test CA");
    let expired = ca.server_expiring(d, "expired", time::Duration::days(-1));
    chmod(&expired.key, 0o644);
    let config = gateway_config(
        d,
        &expired,
        &format!(
            "listen = \"0.0.0.0:{}\"\nauthentication = \"none\"",
            free_port()
        ),
        &orthanc,
    );
    let (code, lines) = doctor(&config, &commented_copy(&orthanc));
    let all = lines.join("\n");
    assert_eq!(code, Some(1), "{all}");
    for l in &lines {
        assert!(
            ["PASS ", "WARN ", "FAIL "].iter().any(|p| l.starts_with(p)) && l.contains(" -> "),
            "not a doctor line: {l}"
        );
    }
    assert_level(&lines, "orthanc config", "PASS");
    for check in [
        "RemoteAccessAllowed",
        "pacsgate open mode",
        &format!("certificate {}", expired.cert.display()),
        &format!("key file {}", expired.key.display()),
        &format!("key file {}", key.display()),
        "storage plugin",
    ] {
        assert_level(&lines, check, "FAIL");
    }
    for check in [
        "AuthenticationEnabled",
        "LimitFindResults",
        "LimitFindInstances",
        "DicomAlwaysAllowStore",
        "DicomAlwaysAllowEcho",
        "DicomCheckCalledAet",
        "WebDavEnabled",
        "ExecuteLuaEnabled",
    ] {
        assert_level(&lines, check, "WARN");
    }
    // Reachable around the gateway: FAIL when this machine has an address to try from.
    let has_address = !line(&lines, "orthanc http port").contains("cannot tell");
    let expected = if has_address { "FAIL" } else { "WARN" };
    assert_level(&lines, "orthanc http port", expected);
    assert_level(&lines, "orthanc dicom port", expected);
    assert!(
        !has_address
            || line(&lines, "orthanc dicom port").contains(&orthanc.dicom_port.to_string()),
        "{all}"
    );
}

#[test]
fn a_plugin_that_is_not_loaded_and_missing_gateway_credentials_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = support::storage::keygen(d, "master.key");
    // Encryption configured, cache off, but no plugin in "Plugins": Orthanc runs without it.
    let orthanc = Orthanc::start(
        d,
        serde_json::json!({
            "AuthenticationEnabled": true,
            "RegisteredUsers": {"gateway": "gateway-Secret-9"},
            "PacsgateStorage": {"StorageEncryption": {"Enable": true, "MasterKey": [1, key]}},
        }),
    );
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let creds = d.join("upstream.credentials");
    std::fs::write(&creds, "gateway:gateway-Secret-9\n").unwrap();
    chmod(&creds, 0o600);
    let with_creds = format!(
        "listen = \"127.0.0.1:{}\"\nauthentication = \"none\"\nupstream_credentials_file = {:?}",
        free_port(),
        creds.display().to_string()
    );
    let config = gateway_config(d, &server, &with_creds, &orthanc);
    let (code, lines) = doctor(&config, &commented_copy(&orthanc));
    assert_eq!(code, Some(1), "{}", lines.join("\n"));
    let plugin = line(&lines, "storage plugin");
    assert!(
        plugin.starts_with("FAIL") && plugin.contains("StorageAreaPlugin"),
        "{plugin}"
    );
    assert_level(&lines, "AuthenticationEnabled", "PASS");
    assert_level(&lines, "pacsgate open mode", "WARN");

    let without = format!(
        "listen = \"127.0.0.1:{}\"\nauthentication = \"none\"",
        free_port()
    );
    let config = gateway_config(d, &server, &without, &orthanc);
    let (_, lines) = doctor(&config, &commented_copy(&orthanc));
    assert_level(&lines, "AuthenticationEnabled", "FAIL");
}

#[test]
fn a_correct_setup_has_no_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = support::storage::keygen(d, "master.key");
    let mut extra = support::storage::plugin_config(
        (1, &key),
        &[],
        support::storage::fs_location(&d.join("encrypted")),
    );
    let settings = serde_json::json!({
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": true,
        "RegisteredUsers": {"gateway": "gateway-Secret-9"},
        "LimitFindResults": 100,
        "LimitFindInstances": 100,
        "DicomAlwaysAllowStore": false,
        "DicomAlwaysAllowEcho": false,
        "DicomCheckCalledAet": true,
        "WebDavEnabled": false,
        "ExecuteLuaEnabled": false,
    });
    extra
        .as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let orthanc = Orthanc::start(d, extra);
    let ca = Ca::new(d, "Test CA");
    let server = ca.server(d, "server");
    let creds = d.join("upstream.credentials");
    std::fs::write(&creds, "gateway:gateway-Secret-9\n").unwrap();
    chmod(&creds, 0o600);
    let http = format!(
        "listen = \"0.0.0.0:{}\"\nupstream_credentials_file = {:?}\n[users.admin]\npassword_hash = \"{}\"\n[[http.rules]]\nusers = [\"admin\"]\npaths = [\"/**\"]",
        free_port(),
        creds.display().to_string(),
        hash(ADMIN_PW)
    );
    let config = gateway_config(d, &server, &http, &orthanc);
    let (code, lines) = doctor(&config, &commented_copy(&orthanc));
    let all = lines.join("\n");
    assert!(!all.contains("FAIL "), "{all}");
    assert_eq!(code, Some(0), "{all}");
    let plugin = line(&lines, "storage plugin");
    assert!(
        plugin.starts_with("PASS") && plugin.contains("loaded"),
        "{plugin}"
    );
    for check in [
        "RemoteAccessAllowed",
        "AuthenticationEnabled",
        "WebDavEnabled",
    ] {
        assert_level(&lines, check, "PASS");
    }
    assert_level(&lines, &format!("key file {}", key.display()), "PASS");
    assert_level(&lines, &format!("key file {}", creds.display()), "PASS");
}
