//! The PKCS#11 master key against Debian's SoftHSM2 (tests/run.sh installs softhsm2):
//! `keygen` makes a sensitive, non-extractable AES-256 key in the token (its value cannot be
//! read through the PKCS#11 API), wrap/unwrap run inside the token with AES-GCM and are
//! bound to their AAD; a missing key or an open PIN file fails.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use pacsgate_storage::keys::pkcs11::{Pkcs11Key, Pkcs11Uri};
use pacsgate_storage::keys::{DataKey, MasterKeyProvider};
use pacsgate_storage::Error;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh token in `dir`. SoftHSM reads SOFTHSM2_CONF when the module initialises, and a
/// module initialises once per process, so this file holds a single test.
fn token(dir: &Path) -> String {
    let conf = dir.join("softhsm2.conf");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let status = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "unit",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .status()
        .expect("softhsm2-util (apt install softhsm2)");
    assert!(status.success());
    let pin = dir.join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    pin.display().to_string()
}

#[test]
fn keys_are_non_extractable_and_wraps_happen_in_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pin = token(dir.path());
    let uri = |object: &str, pin: &str| {
        Pkcs11Uri::parse(&format!(
            "pkcs11:token=unit;object={object}?module-path={MODULE}&pin-source=file:{pin}"
        ))
        .unwrap()
    };
    let missing = Pkcs11Key::open(&uri("master", &pin))
        .err()
        .expect("no key yet");
    assert!(
        missing.to_string().contains("not in the token"),
        "{missing}"
    );
    Pkcs11Key::generate(&uri("master", &pin)).unwrap();
    let again = Pkcs11Key::generate(&uri("master", &pin)).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    let key = Pkcs11Key::open(&uri("master", &pin)).unwrap();

    let dek = DataKey::from_bytes([9; 32]);
    let blob = key.wrap(b"aad", &dek).unwrap();
    assert_eq!(blob.len(), 60);
    assert!(!blob.windows(32).any(|w| w == [9; 32]));
    let back = key.unwrap(b"aad", &blob).unwrap();
    assert_eq!(key.wrap(b"aad", &back).unwrap().len(), 60);
    // A failed GCM tag: CKR_ENCRYPTED_DATA_INVALID per PKCS#11, which SoftHSM 2.6 reports
    // as CKR_GENERAL_ERROR; either way an error, never a key.
    let refused = |r: Result<DataKey, Error>| match r {
        Err(Error::Integrity) => true,
        Err(Error::Kms(m)) => m.contains("C_Decrypt"),
        _ => false,
    };
    assert!(refused(key.unwrap(b"other", &blob)), "other AAD accepted");
    let mut bad = blob.clone();
    bad[20] ^= 1;
    assert!(refused(key.unwrap(b"aad", &bad)), "tampered blob accepted");
    assert!(matches!(
        key.unwrap(b"aad", &blob[..59]),
        Err(Error::Integrity)
    ));

    // A PIN file others can read is refused (a wrong PIN is tested in a fresh process,
    // tests/storage_kms.rs: PKCS#11 login state is per process).
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "9999\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Pkcs11Key::open(&uri("master", &wrong.display().to_string()))
        .err()
        .expect("open PIN file");
    assert!(err.to_string().contains("chmod 600"), "{err}");

    // The key's attributes, read through the PKCS#11 API.
    let ctx = Pkcs11::new(MODULE).unwrap();
    let _ = ctx.initialize(CInitializeArgs::OsThreads);
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == "unit")
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new("1234".into())));
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"master".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::Token,
                AttributeType::ValueLen,
            ],
        )
        .unwrap();
    for a in &attrs {
        match a {
            Attribute::Extractable(v) => assert!(!v, "extractable"),
            Attribute::Sensitive(v) => assert!(v, "not sensitive"),
            Attribute::Token(v) => assert!(v, "session object"),
            Attribute::ValueLen(n) => assert_eq!(u64::from(*n), 32),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(attrs.len(), 4);
    // Another client logs the application out of the token (as an HSM restart or a token
    // reinsertion would end the session): the key logs in again once and carries on.
    session.logout().unwrap();
    let blob = key.wrap(b"aad", &dek).expect("wrap after a lost login");
    assert!(key.unwrap(b"aad", &blob).is_ok());
    // CKA_VALUE of a sensitive key is not returned.
    let value = session
        .get_attributes(found[0], &[AttributeType::Value])
        .unwrap_or_default();
    assert!(
        !value.iter().any(|a| matches!(a, Attribute::Value(_))),
        "key value readable"
    );
}
