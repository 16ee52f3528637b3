//! `pacsgate storage ARGS...` runs the separate `pacsgate-storage` tool with ARGS unchanged
//! (exec: same process, environment, exit status). The storage commands need the
//! object-store (S3/Azure/GCS) and key-service (AWS KMS, Vault) HTTP clients; keeping them
//! in their own binary keeps that client stack out of this internet-facing one (issue 11).
//!
//! Where the tool is looked up, and why (abuse: an operator runs `pacsgate storage` as root
//! in a directory someone else can write, e.g. /tmp, with a planted `pacsgate-storage`):
//! 1. the directory of this executable (`/proc/self/exe`, links resolved): the .deb installs
//!    both in /usr/bin, a source build leaves both in target/release;
//! 2. then the absolute directories of `PATH`, in order. Empty and relative entries (which
//!    the shell reads as the current directory) are skipped, never searched.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The tool's file name.
pub const TOOL: &str = "pacsgate-storage";

/// EX_UNAVAILABLE (sysexits.h): the tool is not installed or cannot be executed.
const EXIT_UNAVAILABLE: u8 = 69;

/// Replace this process with `pacsgate-storage ARGS...`; returns only on failure.
pub fn run(args: &[OsString]) -> ExitCode {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path = std::env::var_os("PATH");
    let Some(tool) = find_tool(exe_dir.as_deref(), path.as_deref()) else {
        let beside = exe_dir.map_or_else(
            || "this executable's directory".to_string(),
            |d| d.display().to_string(),
        );
        eprintln!(
            "pacsgate storage: the storage tool {TOOL} is not installed (looked in {beside} \
             and the absolute directories of PATH); install it next to pacsgate (the .deb \
             ships both; from source: cargo build --release -p pacsgate-storage-cli)"
        );
        return ExitCode::from(EXIT_UNAVAILABLE);
    };
    let err = std::process::Command::new(&tool).args(args).exec();
    eprintln!("pacsgate storage: cannot execute {}: {err}", tool.display());
    ExitCode::from(EXIT_UNAVAILABLE)
}

/// The first executable regular file named [`TOOL`] beside this executable, then in the
/// absolute entries of `path` (a `PATH` value).
pub fn find_tool(exe_dir: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let from_path = path
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(from_path.into_iter().filter(|dir| dir.is_absolute()))
        .map(|dir| dir.join(TOOL))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_in(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join(TOOL);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn beside_the_executable_wins_over_path() {
        let (beside, on_path) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let expected = tool_in(beside.path(), 0o755);
        tool_in(on_path.path(), 0o755);
        let path = std::env::join_paths([on_path.path()]).unwrap();
        assert_eq!(find_tool(Some(beside.path()), Some(&path)), Some(expected));
    }

    #[test]
    fn path_is_searched_in_order_absolute_entries_only() {
        let (empty, on_path) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let expected = tool_in(on_path.path(), 0o755);
        let path = std::env::join_paths([empty.path(), on_path.path()]).unwrap();
        assert_eq!(find_tool(Some(empty.path()), Some(&path)), Some(expected));
        // Relative and empty entries resolve against the current directory: never used,
        // even when the relative spelling names a directory holding the tool.
        let up = "../".repeat(std::env::current_dir().unwrap().components().count());
        let relative = PathBuf::from(up).join(on_path.path().strip_prefix("/").unwrap());
        assert!(is_executable_file(&relative.join(TOOL)), "{relative:?}");
        let cwd_like = std::env::join_paths([Path::new(""), Path::new("."), &relative]).unwrap();
        assert_eq!(find_tool(Some(empty.path()), Some(&cwd_like)), None);
    }

    #[test]
    fn not_executable_or_not_a_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        tool_in(dir.path(), 0o644);
        assert_eq!(find_tool(Some(dir.path()), None), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(TOOL)).unwrap();
        assert_eq!(find_tool(Some(dir.path()), None), None);
    }
}
