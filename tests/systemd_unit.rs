//! deploy/pacsgate.service as systemd itself reads it (systemd-analyze runs without
//! systemd as PID 1): it verifies, its exposure score stays <= 2.0, it waits for the
//! gateway's READY=1, validates a configuration before sending SIGHUP, and names no
//! directory that nothing creates.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/pacsgate.service")
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (package systemd) is needed; run tests/run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// "→ Overall exposure level for pacsgate.service: 1.4 OK 🙂" -> 1.4
pub fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let (_, after) = line.split_once("pacsgate.service:")?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_score_is_at_most_two() {
    let (_, report) = analyze(&["security", "--offline=yes", "--no-pager"], &unit());
    let score = exposure(&report).unwrap_or_else(|| panic!("no score in:\n{report}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");
}

#[test]
fn unit_verifies_and_has_the_contract_directives() {
    let text = std::fs::read_to_string(unit()).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let has = |l: &str| lines.contains(&l);
    assert!(has("Type=notify"), "not Type=notify");
    let reloads: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(
        reloads.len(),
        2,
        "ExecReload must be check, then kill -HUP: {reloads:?}"
    );
    assert!(reloads[0].contains(" check --config "), "{reloads:?}");
    assert!(reloads[1].contains("kill -HUP $MAINPID"), "{reloads:?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("ReadWritePaths=")),
        "ReadWritePaths names directories nothing creates; use StateDirectory=/LogsDirectory="
    );
    for directive in [
        "StateDirectory=pacsgate",
        "LogsDirectory=pacsgate",
        "UMask=0077",
    ] {
        assert!(has(directive), "{directive} missing");
    }

    // verify wants the binaries to exist: point the copy at the one cargo built, and drop
    // the man: link (the package test verifies the installed unit with its man page).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pacsgate.service");
    let adapted = text
        .replace("/usr/bin/pacsgate", support::gateway::binary())
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&copy, adapted).unwrap();
    let (ok, report) = analyze(&["verify"], &copy);
    assert!(ok && report.trim().is_empty(), "{report}");
}
