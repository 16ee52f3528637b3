//! `rust-version` in Cargo.toml is the real minimum: no locked dependency built for this
//! platform needs a newer compiler, and it claims no older one than they need. (Our own
//! code's use of newer std APIs is caught by clippy's `incompatible_msrv`, which reads the
//! same field.)

use std::process::Command;

fn version(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn host() -> String {
    let out = Command::new("rustc").arg("-vV").output().expect("rustc");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV prints the host")
        .to_string()
}

#[test]
fn rust_version_is_what_the_lock_file_needs() {
    let out = Command::new(option_env!("CARGO").unwrap_or("cargo"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    let needs = packages
        .iter()
        .filter(|p| p["source"].is_string())
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((version(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("dependencies declare rust-version");
    assert!(
        needs.0 <= ours,
        "rust-version {ours:?} but {} needs {:?}: raise it",
        needs.1,
        needs.0
    );
    assert_eq!(
        needs.0, ours,
        "rust-version {ours:?} but the dependencies need only {:?} ({}): lower it",
        needs.0, needs.1
    );
    for member in packages.iter().filter(|p| p["source"].is_null()) {
        assert_eq!(
            member["rust_version"].as_str().map(version),
            Some(ours),
            "{} does not inherit the workspace rust-version",
            member["name"]
        );
    }
}
