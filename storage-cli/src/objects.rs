//! Whole-location operations: verify, migrate, rekey. Each object is handled on its own and
//! replaced atomically, so an interrupted run is resumed by running it again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use pacsgate_storage::format::Kind;
use pacsgate_storage::{Error, Store};

use super::Failure;

/// A one-line progress bar on stderr (only on a terminal).
struct Progress {
    enabled: bool,
    total: usize,
    verb: &'static str,
}

impl Progress {
    fn tick(&self, done: usize) {
        if !self.enabled {
            return;
        }
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        eprint!(
            "\r[{}{}] {done}/{} {}",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.total,
            self.verb
        );
        if done == self.total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }
}

/// Decrypt every object; one line per object with its format, master key and provider
/// (and the content type a v3 object is bound to), then a summary.
pub fn verify(store: &Store) -> Result<ExitCode, Failure> {
    let names = store.backend().list()?;
    let mut bad = Vec::new();
    let mut plain = 0usize;
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for name in &names {
        match store.decrypt_to(name, None, &mut std::io::sink()) {
            Ok(info) => {
                let key = info.key_id.map_or("-".to_string(), |id| {
                    format!("{id} ({})", store.keys().kind(id).unwrap_or("?"))
                });
                let bound = match info.content_type {
                    Some(0) => " content-type unbound".to_string(),
                    Some(t) => format!(" content-type {t}"),
                    None => String::new(),
                };
                println!("OK {name} {} key {key}{bound}", info.kind.name());
                *tally
                    .entry(format!("{} key {key}", info.kind.name()))
                    .or_default() += 1;
            }
            Err(Error::UnknownFormat) => {
                plain += 1;
                bad.push((name, "not encrypted".to_string()));
            }
            Err(e) => bad.push((name, e.to_string())),
        }
    }
    list_failures("UNREADABLE", &bad);
    let by_key: Vec<String> = tally.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "{} objects on {}: {} ok, {} unreadable ({} not encrypted); by format and key: {}",
        names.len(),
        store.backend().describe(),
        names.len() - bad.len(),
        bad.len(),
        plain,
        match by_key.is_empty() {
            true => "-".to_string(),
            false => by_key.join(", "),
        }
    );
    Ok(exit_code(&bad))
}

pub fn migrate(store: &Store, root: &Path, dry_run: bool, show: bool) -> Result<ExitCode, Failure> {
    let names = store.backend().list()?;
    let progress = Progress {
        enabled: show && !dry_run,
        total: names.len(),
        verb: "migrated",
    };
    let (mut done, mut plain, mut a1, mut v2, mut failed) =
        (0usize, 0usize, 0usize, 0usize, Vec::new());
    for (i, name) in names.iter().enumerate() {
        let kind = match store.inspect(name) {
            Ok(info) => info.kind,
            Err(e) => {
                failed.push((name, e.to_string()));
                continue;
            }
        };
        let outcome = match (kind, dry_run) {
            (Kind::V3, _) => Ok(()),
            (Kind::V2, true) => {
                v2 += 1;
                Ok(())
            }
            (Kind::V2, false) => store.upgrade(name).map(|()| v2 += 1),
            (Kind::Other, true) => {
                plain += 1;
                Ok(())
            }
            (Kind::A1, true) => {
                a1 += 1;
                Ok(())
            }
            (Kind::Other, false) => encrypt_plain(store, root, name).map(|()| plain += 1),
            (Kind::A1, false) => store.upgrade(name).map(|()| a1 += 1),
        };
        match (kind, outcome) {
            (Kind::V3, _) => done += 1,
            (_, Err(e)) => failed.push((name, e.to_string())),
            _ => {}
        }
        progress.tick(i + 1);
    }
    list_failures("FAILED", &failed);
    let verb = if dry_run {
        "would encrypt"
    } else {
        "encrypted"
    };
    println!(
        "{} objects: {verb} {plain} plain, {a1} A1 and {v2} v2 objects; {done} already in the new format (v3); {} failed",
        names.len(),
        failed.len()
    );
    Ok(exit_code(&failed))
}

/// Encrypt a plain file, streaming it from disk; the rename replaces it atomically.
fn encrypt_plain(store: &Store, root: &Path, name: &str) -> Result<(), Error> {
    let path = root.join(name);
    let mut file = std::fs::File::open(&path).map_err(|e| Error::Io {
        op: "open",
        name: name.to_string(),
        source: e,
    })?;
    let len = file
        .metadata()
        .map_err(|e| Error::Io {
            op: "stat",
            name: name.to_string(),
            source: e,
        })?
        .len();
    // The content type is not known offline: 0 (the uuid is still bound).
    store.put_reader(name, 0, len, &mut file)
}

pub fn rekey(store: &Store, show: bool) -> Result<ExitCode, Failure> {
    let names = store.backend().list()?;
    let progress = Progress {
        enabled: show,
        total: names.len(),
        verb: "rekeyed",
    };
    let current = store.keys().current_id();
    let (mut moved, mut already, mut failed) = (0usize, 0usize, Vec::new());
    for (i, name) in names.iter().enumerate() {
        let result = match store.inspect(name) {
            Ok(info) if matches!(info.kind, Kind::V3 | Kind::V2) => store.rekey(name),
            Ok(info) if info.kind == Kind::A1 => Err(Error::Unsupported(
                "A1 object: run `pacsgate storage migrate`",
            )),
            Ok(_) => Err(Error::UnknownFormat),
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => moved += 1,
            Ok(false) => already += 1,
            Err(e) => failed.push((name, e.to_string())),
        }
        progress.tick(i + 1);
    }
    list_failures("FAILED", &failed);
    println!(
        "{} objects: {moved} moved to master key {current}, {already} already there, {} failed",
        names.len(),
        failed.len()
    );
    Ok(exit_code(&failed))
}

/// One line per object that failed, before the summary line.
fn list_failures(label: &str, failures: &[(&String, String)]) {
    for (name, why) in failures {
        println!("{label} {name}: {why}");
    }
}

fn exit_code(failures: &[(&String, String)]) -> ExitCode {
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
