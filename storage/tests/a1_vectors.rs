//! The official plugin's A1 format: the published vectors (tests/vectors/a1-vectors.json,
//! copied from the format research) decrypt, with the current or a previous master key,
//! from key files in the official base64 form; tampering and truncation are refused.

use std::sync::Arc;

use pacsgate_storage::backend::fs::FsBackend;
use pacsgate_storage::backend::{orthanc_name, Backend};
use pacsgate_storage::format::a1;
use pacsgate_storage::keys::{parse_key_text, KeyRing, MasterKey};
use pacsgate_storage::{Error, Store};

struct Vector {
    name: String,
    kek: [u8; 32],
    key_id: u32,
    plaintext: Vec<u8>,
    blob: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors/a1-vectors.json");
    let json: serde_json::Value = serde_json::from_str(text).unwrap();
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let file = v["kek_base64_file_content"].as_str().unwrap();
            let kek = parse_key_text(file.as_bytes()).unwrap();
            assert_eq!(kek.to_vec(), hex(v["kek_hex"].as_str().unwrap()));
            let blob = hex(v["encrypted_hex"].as_str().unwrap());
            assert_eq!(blob.len() as u64, v["encrypted_len"].as_u64().unwrap());
            Vector {
                name: v["name"].as_str().unwrap().to_string(),
                kek: *kek,
                key_id: v["key_id"].as_u64().unwrap() as u32,
                plaintext: hex(v["plaintext_hex"].as_str().unwrap()),
                blob,
            }
        })
        .collect()
}

#[test]
fn every_vector_decrypts_with_current_or_previous_key() {
    let vs = vectors();
    assert_eq!(vs.len(), 3);
    for (i, v) in vs.iter().enumerate() {
        let only = KeyRing::new(MasterKey::from_bytes(v.key_id, v.kek).unwrap(), []);
        assert_eq!(
            a1::decrypt(&only, v.blob.clone()).unwrap(),
            v.plaintext,
            "{}",
            v.name
        );
        // All three keys in one ring, the vector's key as a previous one.
        let current = &vs[(i + 1) % vs.len()];
        let ring = KeyRing::new(
            MasterKey::from_bytes(current.key_id, current.kek).unwrap(),
            vs.iter()
                .filter(|o| o.key_id != current.key_id)
                .map(|o| MasterKey::from_bytes(o.key_id, o.kek).unwrap()),
        );
        assert_eq!(
            a1::decrypt(&ring, v.blob.clone()).unwrap(),
            v.plaintext,
            "{}",
            v.name
        );
    }
}

#[test]
fn unknown_key_tamper_and_truncation_are_errors() {
    for v in vectors() {
        let other = KeyRing::new(MasterKey::from_bytes(v.key_id ^ 1, v.kek).unwrap(), []);
        assert!(matches!(
            a1::decrypt(&other, v.blob.clone()),
            Err(Error::UnknownKey(_))
        ));
        let wrong = KeyRing::new(MasterKey::from_bytes(v.key_id, [9; 32]).unwrap(), []);
        assert!(matches!(
            a1::decrypt(&wrong, v.blob.clone()),
            Err(Error::Integrity)
        ));
        let ring = KeyRing::new(MasterKey::from_bytes(v.key_id, v.kek).unwrap(), []);
        for at in 6..v.blob.len() {
            let mut bad = v.blob.clone();
            bad[at] ^= 0x80;
            assert!(a1::decrypt(&ring, bad).is_err(), "{} flip at {at}", v.name);
        }
        for cut in 0..v.blob.len() {
            assert!(
                a1::decrypt(&ring, v.blob[..cut].to_vec()).is_err(),
                "{} cut {cut}",
                v.name
            );
        }
    }
}

#[test]
fn store_reads_a1_objects_whole_and_by_range() {
    let v = vectors().remove(2);
    let dir = tempfile::tempdir().unwrap();
    let backend = FsBackend::new(dir.path());
    let name = orthanc_name("01234567-89ab-cdef-0123-456789abcdef").unwrap();
    let mut w = backend.create(&name, v.blob.len() as u64).unwrap();
    std::io::Write::write_all(&mut w, &v.blob).unwrap();
    w.commit().unwrap();
    let ring = KeyRing::new(
        MasterKey::from_bytes(7, [7; 32]).unwrap(),
        [MasterKey::from_bytes(v.key_id, v.kek).unwrap()],
    );
    let store = Store::new(Arc::new(ring), Box::new(backend), 1 << 20);
    let mut out = Vec::new();
    store.read_whole(&name, Some(1), &mut out).unwrap();
    assert_eq!(out, v.plaintext);
    let mut part = vec![0u8; 10];
    store.read_range(&name, Some(1), 5, &mut part).unwrap();
    assert_eq!(part, v.plaintext[5..15]);
    // Rewrite to the new format (what `migrate` does for A1 objects).
    store.put(&name, 1, &out).unwrap();
    assert_eq!(store.inspect(&name).unwrap().key_id, Some(7));
}
