//! `storage migrate` and `rekey` rewrite Orthanc's files in place, usually as root; each
//! rewritten file must keep the owner, group and mode it had, or Orthanc (User=orthanc)
//! can no longer read its own storage. Run as root with files owned by a real non-root
//! account (Debian's `orthanc` user, or `nobody`).

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use support::storage::{cli, keygen};

const UUID: &str = "17dfc0b5-8b18-4a3c-9d2e-0123456789ab";

/// (uid, gid) of the account Orthanc's files belong to.
fn orthanc_owner() -> (u32, u32) {
    for name in ["orthanc", "nobody"] {
        if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
            return (user.uid.as_raw(), user.gid.as_raw());
        }
    }
    panic!("neither an orthanc nor a nobody account exists");
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn migrate_and_rekey_keep_owner_and_mode() {
    let root_run = nix::unistd::geteuid().is_root();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("db");
    let object = storage.join(&UUID[0..2]).join(&UUID[2..4]).join(UUID);
    std::fs::create_dir_all(object.parent().unwrap()).unwrap();
    std::fs::copy(support::pydicom_file("CT_small.dcm"), &object).unwrap();
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o640)).unwrap();
    let expected = if root_run {
        let (uid, gid) = orthanc_owner();
        std::os::unix::fs::chown(&object, Some(uid), Some(gid)).unwrap();
        (uid, gid, 0o640)
    } else {
        let (uid, gid, _) = owner_and_mode(&object);
        (uid, gid, 0o640)
    };
    let key1 = keygen(dir.path(), "1.key");
    let key2 = keygen(dir.path(), "2.key");
    let root = storage.display().to_string();
    let k1 = format!("1:{}", key1.display());
    let k2 = format!("2:{}", key2.display());

    let before = std::fs::read(&object).unwrap();
    let (status, out) = cli(&["migrate", "--root", &root, "--key", &k1]);
    assert!(status.success(), "{out}");
    assert_ne!(std::fs::read(&object).unwrap(), before, "not encrypted");
    assert_eq!(owner_and_mode(&object), expected, "after migrate");

    let (status, out) = cli(&["rekey", "--root", &root, "--key", &k2, "--key", &k1]);
    assert!(status.success(), "{out}");
    assert!(out.contains("1 moved"), "{out}");
    assert_eq!(owner_and_mode(&object), expected, "after rekey");

    let (status, out) = cli(&["verify", "--root", &root, "--key", &k2]);
    assert!(status.success(), "{out}");
}
