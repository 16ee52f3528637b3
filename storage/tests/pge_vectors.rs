//! Format v3 (and legacy v2) test vectors written by an independent Python implementation
//! of storage/FORMAT.md (tests/vectors/pge_reference.py): the Rust reader decrypts each one
//! from an Orthanc-layout directory under its uuid; the same bytes under another uuid
//! (a swap or rename) or asked for as another content type fail; v2 stays readable.

use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use base64::Engine;
use pacsgate_storage::backend::fs::FsBackend;
use pacsgate_storage::backend::{orthanc_name, Backend};
use pacsgate_storage::format::pge::Header;
use pacsgate_storage::keys::{parse_key_text, KeyRing, MasterKey};
use pacsgate_storage::{Error, Store};

const OTHER_UUID: &str = "99999999-8b18-4a3c-9d2e-0123456789ab";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_raw(backend: &FsBackend, name: &str, bytes: &[u8]) {
    let mut w = backend.create(name, bytes.len() as u64).unwrap();
    w.write_all(bytes).unwrap();
    w.commit().unwrap();
}

#[test]
fn python_vectors_decrypt_and_are_bound_to_their_identity() {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("vectors/pge-vectors.json")).unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    // All vector keys in one ring (ids 1 and 7); current 1.
    let key = |v: &serde_json::Value| {
        let k = parse_key_text(v["master_key_base64"].as_str().unwrap().as_bytes()).unwrap();
        MasterKey::from_bytes(v["key_id"].as_u64().unwrap() as u32, *k).unwrap()
    };
    let seven = vectors.iter().find(|v| v["key_id"] == 7).unwrap();
    let ring = KeyRing::new(key(&vectors[0]), [key(seven)]);
    let store = Store::new(
        Arc::new(ring),
        Box::new(FsBackend::new(dir.path())),
        1 << 24,
    );
    let raw = FsBackend::new(dir.path());
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let uuid = v["uuid"].as_str().unwrap();
        let object = b64.decode(v["object_base64"].as_str().unwrap()).unwrap();
        let header = Header::parse(&object).unwrap();
        assert_eq!(
            u64::from(header.version),
            v["version"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            header.encode(),
            object[..header.header_len()],
            "{name}: header re-encodes"
        );
        assert_eq!(header.object_len(), object.len() as u64, "{name}");
        let asked = v["content_type"].as_u64().map(|t| t as u32);
        let stored_as = orthanc_name(uuid).unwrap();
        put_raw(&raw, &stored_as, &object);

        let mut plain = Vec::new();
        store
            .read_whole(&stored_as, asked.or(Some(1)), &mut plain)
            .unwrap();
        assert_eq!(
            plain.len() as u64,
            v["plaintext_len"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex(digest(&SHA256, &plain).as_ref()),
            v["plaintext_sha256"].as_str().unwrap(),
            "{name}"
        );
        if let Some(text) = v["plaintext_hex"].as_str() {
            assert_eq!(hex(&plain), text, "{name}");
        }
        if !plain.is_empty() {
            let mut part = vec![0u8; plain.len().min(7)];
            store
                .read_range(
                    &stored_as,
                    asked,
                    plain.len() as u64 - part.len() as u64,
                    &mut part,
                )
                .unwrap();
            assert_eq!(part, plain[plain.len() - part.len()..], "{name}");
        }

        // The same bytes under another uuid: a swap or a rename.
        let moved = orthanc_name(OTHER_UUID).unwrap();
        put_raw(&raw, &moved, &object);
        let swapped = store.read_whole(&moved, asked, &mut Vec::new());
        match header.version {
            3 => assert!(
                matches!(swapped, Err(Error::Integrity)),
                "{name}: {swapped:?}"
            ),
            _ => assert!(swapped.is_ok(), "{name}: v2 is not bound to its name"),
        }
        // Asked for as another content type.
        if asked.is_some_and(|t| t != 0) {
            let r = store.read_whole(&stored_as, Some(2), &mut Vec::new());
            assert!(
                matches!(r, Err(Error::WrongContentType { asked: 2, .. })),
                "{name}: {r:?}"
            );
        }
        let info = store.inspect(&stored_as).unwrap();
        assert_eq!(info.key_id, Some(header.key_id));
    }
}

/// `AcceptUnboundFormats: false`: once a storage is migrated, a v2 object (not bound to its
/// name) put back under an attachment's name is refused on Orthanc's read paths, so old
/// copies cannot be swapped in; the CLI still reads it (migrate needs to).
#[test]
fn unbound_formats_can_be_refused() {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("vectors/pge-vectors.json")).unwrap();
    let v = json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == 2)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = parse_key_text(v["master_key_base64"].as_str().unwrap().as_bytes()).unwrap();
    let ring = Arc::new(KeyRing::new(MasterKey::from_bytes(1, *k).unwrap(), []));
    let name = orthanc_name(OTHER_UUID).unwrap();
    let object = base64::engine::general_purpose::STANDARD
        .decode(v["object_base64"].as_str().unwrap())
        .unwrap();
    put_raw(&FsBackend::new(dir.path()), &name, &object);
    let open = Store::new(ring.clone(), Box::new(FsBackend::new(dir.path())), 1 << 24);
    assert!(
        open.read_whole(&name, Some(1), &mut Vec::new()).is_ok(),
        "v2 readable by default"
    );
    let strict =
        Store::new(ring, Box::new(FsBackend::new(dir.path())), 1 << 24).refuse_unbound(true);
    let r = strict.read_whole(&name, Some(1), &mut Vec::new());
    assert!(matches!(r, Err(Error::Unbound("v2"))), "{r:?}");
    assert!(matches!(
        strict.read_range(&name, Some(1), 0, &mut [0u8; 4]),
        Err(Error::Unbound(_))
    ));
    assert!(strict.decrypt_to(&name, None, &mut std::io::sink()).is_ok());
}

/// Objects are hostile input for whoever can write the storage: seeded random mutations
/// of every vector (byte flips anywhere, the length and W fields set to extremes,
/// truncation, extension) never panic, never allocate from a forged length, and never
/// yield anything but an error or the exact original plaintext.
#[test]
fn mutated_objects_fail_cleanly() {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("vectors/pge-vectors.json")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let vectors = json["vectors"].as_array().unwrap();
    let key = |v: &serde_json::Value| {
        let k = parse_key_text(v["master_key_base64"].as_str().unwrap().as_bytes()).unwrap();
        MasterKey::from_bytes(v["key_id"].as_u64().unwrap() as u32, *k).unwrap()
    };
    let seven = vectors.iter().find(|v| v["key_id"] == 7).unwrap();
    let ring = Arc::new(KeyRing::new(key(&vectors[0]), [key(seven)]));
    let dir = tempfile::tempdir().unwrap();
    let raw = FsBackend::new(dir.path());
    let store = Store::new(ring, Box::new(FsBackend::new(dir.path())), 1 << 24);
    let mut state = 0x9e37_79b9_7f4a_7c15u64; // xorshift64, fixed seed: reproducible
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    for v in vectors {
        let uuid = v["uuid"].as_str().unwrap();
        let name = orthanc_name(uuid).unwrap();
        let original = b64.decode(v["object_base64"].as_str().unwrap()).unwrap();
        let mut plain = Vec::new();
        put_raw(&raw, &name, &original);
        store.read_whole(&name, None, &mut plain).unwrap();
        for round in 0..300 {
            let mut m = original.clone();
            let r = next();
            match round % 6 {
                0 => {
                    let at = (r as usize) % m.len();
                    m[at] ^= 1 << ((r >> 32) % 8);
                }
                1 => m[8..16].copy_from_slice(&(r | (1 << 62)).to_be_bytes()), // huge L
                2 => m[48..50].copy_from_slice(&((r % 65536) as u16).to_be_bytes()), // any W
                3 => m.truncate((r as usize) % m.len()),
                4 => m.extend_from_slice(&r.to_be_bytes()[..1 + (r >> 60) as usize % 8]),
                _ => {
                    let at = 24 + (r as usize) % 26; // salt, type, key id, W
                    m[at] = (r >> 40) as u8;
                }
            }
            put_raw(&raw, &name, &m);
            let mut out = Vec::new();
            match store.read_whole(&name, None, &mut out) {
                Ok(()) => assert!(
                    m == original && out == plain,
                    "mutation {round} of {uuid} accepted"
                ),
                Err(_) => refused += 1,
            }
            let mut part = [0u8; 5];
            if let Ok(()) = store.read_range(&name, None, 0, &mut part) {
                assert_eq!(part[..], plain[..5], "range of mutation {round} of {uuid}");
            }
            let mut sink = Vec::new();
            if store.decrypt_to(&name, None, &mut sink).is_ok() {
                assert!(sink == plain, "decrypt_to of mutation {round} of {uuid}");
            }
        }
    }
    assert!(refused > 1400, "{refused} of 1500 mutations refused");
}
