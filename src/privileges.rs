//! Started as root (to bind 443), pacsgate switches to `server.user` once its ports are
//! bound, so a compromise of the process does not hand over root. Certificates it generated
//! are given to that user first, so hot reload keeps working.

use std::path::Path;

use nix::unistd::{chown, getuid, setgid, setgroups, setuid, Gid, Uid};

use crate::config::{Config, RunAs};

#[derive(Debug, thiserror::Error)]
#[error("cannot switch to user {user}: {step}: {source}")]
pub struct DropError {
    user: String,
    step: &'static str,
    source: nix::Error,
}

/// Give generated certificate files to the service user (called while still root).
pub fn hand_over(config: &Config, paths: &[&Path]) {
    let Some(run_as) = config.run_as.as_ref().filter(|_| getuid().is_root()) else {
        return;
    };
    for path in paths {
        let owner = (
            Some(Uid::from_raw(run_as.uid)),
            Some(Gid::from_raw(run_as.gid)),
        );
        if let Err(e) = chown(*path, owner.0, owner.1) {
            tracing::warn!(path = %path.display(), error = %e, "cannot chown to server.user");
        }
    }
}

/// Drop root for `run_as` (groups, then group, then user; the order matters: once the uid
/// changes, the group calls are no longer permitted). A no-op when not root.
pub fn drop_root(run_as: Option<&RunAs>) -> Result<(), DropError> {
    let Some(target) = run_as else { return Ok(()) };
    if !getuid().is_root() {
        tracing::info!(user = %target.name, "not started as root; server.user has nothing to do");
        return Ok(());
    }
    let fail = |step, source| DropError {
        user: target.name.clone(),
        step,
        source,
    };
    let gid = Gid::from_raw(target.gid);
    setgroups(&[gid]).map_err(|e| fail("setgroups", e))?;
    setgid(gid).map_err(|e| fail("setgid", e))?;
    setuid(Uid::from_raw(target.uid)).map_err(|e| fail("setuid", e))?;
    // Paranoia: regaining root must now fail.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(fail("verify", nix::Error::EPERM));
    }
    tracing::info!(user = %target.name, uid = target.uid, "dropped root privileges");
    Ok(())
}
