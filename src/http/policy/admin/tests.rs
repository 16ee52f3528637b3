use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use super::error::KEY;
use super::*;

fn file_with(dir: &Path, text: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(FILE_NAME);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn problem(r: Result<Loaded, AdminFileError>) -> String {
    let e = crate::config::ConfigError::from(r.expect_err("refused"));
    assert_eq!(e.key, KEY);
    e.to_string()
}

#[test]
fn generated_passwords_are_long_printable_and_distinct() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let p = generate().unwrap();
        // 24 base64url characters = 144 bits; parse() accepts what generate() makes.
        assert_eq!(p.len(), 24);
        assert!(p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(parse(format!("admin:{}\n", *p).as_bytes()).is_ok());
        assert!(seen.insert(p.to_string()));
    }
}

#[test]
fn first_create_writes_0600_and_later_ones_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/admin.password");
    let pw = create(&path).unwrap().expect("generated");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("admin:{}\n", *pw)
    );
    assert!(create(&path).unwrap().is_none(), "an existing file is kept");
    let loaded = load(&path).unwrap();
    let hash = loaded.user.password_hash.expect("hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains(pw.as_str()));
    // No stray temp files.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
}

#[test]
fn concurrent_first_starts_generate_exactly_one_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let results: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| create(&path).unwrap().map(|p| p.to_string())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&String> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("admin:{}\n", winners[0])
    );
}

#[test]
fn empty_corrupt_or_weak_files_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for (text, why) in [
        (&b""[..], "is empty"),
        (b"\n", "is empty"),
        (
            b"root:abcdefghijklmnopqrstuvwxyz\n",
            "does not start with admin:",
        ),
        (
            b"abcdefghijklmnopqrstuvwxyz\n",
            "does not start with admin:",
        ),
        (b"admin:short\n", "shorter than 16"),
        (b"admin:has a space in it 1234\n", "printable ASCII"),
        (b"admin:\x00bcdefghijklmnopqrstu\n", "printable ASCII"),
        ("admin:ünïcödé-pässwörd-long".as_bytes(), "printable ASCII"),
    ] {
        let path = file_with(dir.path(), text, 0o600);
        let msg = problem(load(&path));
        assert!(msg.contains(why), "{text:?}: {msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("delete it"), "{msg}");
        assert!(!msg.contains('\n'));
    }
    let path = file_with(dir.path(), &vec![b'a'; 5000], 0o600);
    assert!(problem(load(&path)).contains("larger than 4 KiB"));
    // CRLF from an editor is fine.
    let path = file_with(dir.path(), b"admin:abcdefghijklmnop\r\n", 0o600);
    assert!(load(&path).is_ok());
}

#[test]
fn group_or_world_access_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o640, 0o604, 0o620, 0o644] {
        let path = file_with(dir.path(), b"admin:abcdefghijklmnopqrst\n", mode);
        let msg = problem(load(&path));
        assert!(
            msg.contains("accessible by group or others") && msg.contains("chmod 600"),
            "{msg}"
        );
    }
}

#[test]
fn symlinks_and_fifos_at_the_path_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("elsewhere");
    std::fs::write(&real, "admin:abcdefghijklmnopqrst\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.path().join(FILE_NAME);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // Not replaced by a new file, and not followed.
    assert!(create(&link).unwrap().is_none());
    assert!(problem(load(&link)).contains("is a symbolic link"));
    // A dangling symlink: link(2) does not write through it either.
    let dangling = dir.path().join("dangling.password");
    std::os::unix::fs::symlink(dir.path().join("target-to-be"), &dangling).unwrap();
    assert!(create(&dangling).unwrap().is_none());
    assert!(!dir.path().join("target-to-be").exists());
    // A FIFO would block a plain open() until a writer appears.
    let fifo = dir.path().join("fifo.password");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(problem(load(&fifo)).contains("not a regular file"));
    assert!(inspect(&fifo).is_err());
}

#[test]
fn inspect_reports_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    assert!(inspect(&path).unwrap().contains("does not exist yet"));
    assert!(!path.exists());
    let path = file_with(dir.path(), b"admin:abcdefghijklmnopqrst\n", 0o600);
    assert!(inspect(&path).unwrap().contains("reused on start"));
}

#[test]
fn a_rebuilt_policy_only_takes_the_account_loaded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), b"admin:abcdefghijklmnopqrst\n", 0o600);
    let loaded = load(&path).unwrap();
    assert_eq!(matching(Some(&loaded), &path).unwrap().name, USER);
    let other = dir.path().join("other.password");
    assert!(matching(Some(&loaded), &other).is_err());
    assert!(matching(None, &path).is_err());
}

#[test]
fn a_directory_others_can_write_is_refused_unless_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_with(dir.path(), b"admin:abcdefghijklmnopqrst\n", 0o600);
    let chmod = |m| std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(m));
    chmod(0o777).unwrap();
    assert!(problem(load(&path)).contains("which group or others can write"));
    let fresh = dir.path().join("fresh.password");
    assert!(create(&fresh).is_err());
    assert!(
        !fresh.exists(),
        "nothing generated where it would be refused"
    );
    chmod(0o770).unwrap();
    assert!(load(&path).is_err());
    chmod(0o1777).unwrap();
    assert!(
        load(&path).is_ok(),
        "sticky: others cannot replace our file"
    );
    chmod(0o755).unwrap();
    assert!(load(&path).is_ok());
}
