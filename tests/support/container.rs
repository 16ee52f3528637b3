//! The container images of deploy/container/, built once per test binary by
//! `deploy/container/build.sh` (podman, mmdebstrap; the release build is reused) and
//! exercised without `podman run` (crun cannot set rlimits in this sandbox): the image is
//! mounted read-only (`podman image mount`) and its entrypoint runs in a chroot of the
//! mount point as the image's USER, in a private mount namespace (`unshare -m`) where test
//! directories are bind-mounted over the paths a deployment mounts (/etc/pacsgate,
//! /etc/orthanc, /var/lib/orthanc). The chroot shares the host's network namespace, so
//! the real peers on loopback (Orthanc, curl, echoscu) reach it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{run, Proc};

pub const PACSGATE_IMAGE: &str = "localhost/pacsgate:test";
pub const ORTHANC_IMAGE: &str = "localhost/pacsgate-orthanc:test";

/// The target directory this test binary was built in (…/target/debug/deps/test-hash).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("target dir above debug/deps")
        .to_path_buf()
}

/// Install podman and mmdebstrap if missing (tests/run.sh does it too): a missing tool
/// must make the test install it or fail, never pass.
fn ensure_tools() {
    let missing: Vec<&str> = ["podman", "mmdebstrap"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .expect("apt-get");
    assert!(
        status.success(),
        "cannot install {missing:?}; run tests/run.sh"
    );
}

/// Build both images once (deploy/container/build.sh with test tags).
pub fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        ensure_tools();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/container/build.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .env("CARGO_TARGET_DIR", target_dir())
            .env("PACSGATE_IMAGE", PACSGATE_IMAGE)
            .env("ORTHANC_IMAGE", ORTHANC_IMAGE);
        let (status, out) = run(cmd, Duration::from_secs(1800));
        assert!(status.success(), "deploy/container/build.sh failed:\n{out}");
    });
}

/// `podman image mount IMAGE`: the read-only root file system of the image. Left mounted
/// (tests of one binary share it; podman counts mounts).
pub fn mount(image: &str) -> PathBuf {
    build_images();
    let out = podman(&["image", "mount", image]);
    let path = PathBuf::from(out.trim());
    assert!(path.is_dir(), "podman image mount {image}: {out}");
    path
}

/// `podman ARGS`, which must succeed; its stdout.
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("podman; run tests/run.sh");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman image inspect IMAGE` as JSON (the first and only element).
pub fn inspect(image: &str) -> serde_json::Value {
    build_images();
    let v: serde_json::Value =
        serde_json::from_str(&podman(&["image", "inspect", image])).expect("inspect JSON");
    v[0].clone()
}

/// The image's USER (`uid:gid`), as `chroot --userspec` takes it: the chroot runs the
/// entrypoint as the image says, not as the test assumes.
pub fn image_user(image: &str) -> String {
    let user = inspect(image)["Config"]["User"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !user.is_empty() && !user.starts_with("0:") && user != "0" && user != "root",
        "{image} runs as root ({user:?})"
    );
    user
}

/// A command running `argv` (a path inside the image) chrooted into `root` as
/// `uid:gid`, after bind-mounting each `(host dir, path in image)` in a private mount
/// namespace. The shell runs on the host before `exec chroot`; nothing of it is in the
/// image.
pub fn chroot_cmd(root: &Path, user: &str, binds: &[(&Path, &str)], argv: &[&str]) -> Command {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut script = String::from("set -e; ");
    for (host, inside) in binds {
        script.push_str(&format!(
            "mount --bind {} {}; ",
            quote(&host.display().to_string()),
            quote(&format!("{}{inside}", root.display()))
        ));
    }
    script.push_str(&format!(
        "exec chroot --userspec={user} {}",
        quote(&root.display().to_string())
    ));
    for a in argv {
        script.push(' ');
        script.push_str(&quote(a));
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// Start the chrooted entrypoint as a [`Proc`] (killed on drop).
pub fn spawn_chroot(
    name: &str,
    root: &Path,
    user: &str,
    binds: &[(&Path, &str)],
    argv: &[&str],
    log: &Path,
) -> Proc {
    Proc::spawn(name, chroot_cmd(root, user, binds, argv), log)
}

/// A directory for a bind mount, owned by `uid` with `mode`.
pub fn owned_dir(path: &Path, uid: u32, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).expect("create dir");
    chown(path, uid);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.to_path_buf()
}

/// Copy `src` to `dst`, owned by `uid`, mode 0600 (secrets) or as given.
pub fn owned_copy(src: &Path, dst: &Path, uid: u32, mode: u32) {
    std::fs::copy(src, dst).expect("copy");
    chown(dst, uid);
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).expect("chown (the tests run as root)");
}
