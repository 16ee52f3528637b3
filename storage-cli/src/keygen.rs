//! `pacsgate storage keygen`: a key file, a key in a PKCS#11 token, in AWS KMS or in Vault
//! Transit. Key material is only ever written to the key file (0600, never overwritten);
//! the other providers create the key where it stays.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use pacsgate_storage::keys::generate_key_text;
use pacsgate_storage::keys::location::KeyLocation;
use pacsgate_storage::keys::pkcs11::{Pkcs11Key, Pkcs11Uri};

use super::{Failure, KmsArgs};

pub(super) fn keygen(out: &Path) -> Result<ExitCode, Failure> {
    let text = generate_key_text()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| key_file_error(out, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Failed(format!("{}: {e}", out.display())))?;
    println!(
        "wrote a new master key to {} (mode 0600); configure it as [ID, {:?}]",
        out.display(),
        out.display().to_string()
    );
    Ok(ExitCode::SUCCESS)
}

/// The key directory is not created here: its owner and mode decide who can read the keys,
/// so the operator creates it (README: `install -d -m 0700 -o orthanc ...`).
fn key_file_error(out: &Path, e: std::io::Error) -> Failure {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty());
    match (e.kind(), dir) {
        (std::io::ErrorKind::NotFound, Some(dir)) if !dir.is_dir() => Failure::Usage(format!(
            "--out {}: directory {} does not exist; create it first, e.g. install -d -m 0700 -o orthanc {}",
            out.display(),
            dir.display(),
            dir.display()
        )),
        (std::io::ErrorKind::AlreadyExists, _) => Failure::Usage(format!(
            "--out {}: exists; a key file is never overwritten (choose a new name or id)",
            out.display()
        )),
        _ => Failure::Failed(format!("{}: {e}", out.display())),
    }
}

pub(super) fn keygen_pkcs11(uri: &str) -> Result<ExitCode, Failure> {
    let uri = Pkcs11Uri::parse(uri).map_err(Failure::Usage)?;
    Pkcs11Key::generate(&uri)?;
    println!(
        "created a non-extractable AES-256 key {:?} in token {:?}; configure it as [ID, {:?}]",
        uri.object, uri.token, uri.text
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn keygen_aws_kms(kms: &KmsArgs) -> Result<ExitCode, Failure> {
    let settings = kms.settings().ok_or_else(|| {
        Failure::Usage(
            "--aws-kms needs --kms-region (and --kms-endpoint for a non-AWS endpoint)".into(),
        )
    })?;
    let arn = pacsgate_storage::keys::aws_kms::AwsKms::create_key(
        &settings,
        "pacsgate storage master key",
    )?;
    println!("created KMS key {arn}; configure it as [ID, \"aws-kms:{arn}\"] with \"Kms\": {{\"Region\": {:?}}}", settings.region);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn keygen_vault(name: &str, args: &KmsArgs) -> Result<ExitCode, Failure> {
    if KeyLocation::parse(&format!("vault-transit:{name}")).is_err() {
        return Err(Failure::Usage(format!(
            "--vault-transit {name:?}: letters, digits, - _ . only"
        )));
    }
    let settings = args
        .remotes()
        .vault
        .ok_or_else(|| Failure::Usage("--vault-transit needs --vault-address".into()))?;
    pacsgate_storage::keys::vault_transit::VaultTransit::create_key(name, &settings)?;
    println!(
        "created transit key {name:?} at {}/v1/{}; configure it as [ID, \"vault-transit:{name}\"] with \"Vault\": {{\"Address\": {:?}}}",
        settings.address, settings.mount, settings.address
    );
    Ok(ExitCode::SUCCESS)
}
