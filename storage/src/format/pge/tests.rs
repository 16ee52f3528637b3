use super::*;
use crate::keys::{KeyRing, MasterKey};

const UUID: &str = "17dfc0b5-8b18-4a3c-9d2e-0123456789ab";
const OTHER: &str = "27dfc0b5-8b18-4a3c-9d2e-0123456789ab";

fn id() -> Identity<'static> {
    Identity::of(UUID, Some(1))
}

fn ring(current: u32, previous: &[u32]) -> KeyRing {
    KeyRing::new(
        MasterKey::from_bytes(current, [current as u8; 32]).unwrap(),
        previous
            .iter()
            .map(|&id| MasterKey::from_bytes(id, [id as u8; 32]).unwrap()),
    )
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

/// Seals with all three paths (stream, slice to a writer, slice to a slice); all must
/// produce the same layout and open to the same plaintext.
fn seal(keys: &KeyRing, plain: &[u8]) -> Vec<u8> {
    let create = || SegmentKey::create(keys, id(), plain.len() as u64).unwrap();
    let mut a = Vec::new();
    seal_stream(&create(), &mut &plain[..], &mut a).unwrap();
    let mut b = Vec::new();
    seal_slice(&create(), plain, &mut b).unwrap();
    let sk = create();
    let mut c = vec![0u8; sk.header().object_len() as usize];
    seal_to_slice(&sk, plain, &mut c).unwrap();
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), c.len());
    assert_eq!(open(keys, &b).unwrap(), plain);
    assert_eq!(open(keys, &c).unwrap(), plain);
    a
}

/// Opens through both paths of `open_stream`: from memory (every segment opened straight
/// from the source) and through a small buffer (segments read into place, opened there).
/// They must agree on the plaintext or on the kind of error, and a failed open leaves only
/// zeros behind.
fn open(keys: &KeyRing, blob: &[u8]) -> Result<Vec<u8>> {
    open_as(keys, id(), blob)
}

fn open_as(keys: &KeyRing, id: Identity, blob: &[u8]) -> Result<Vec<u8>> {
    let mut direct = Vec::new();
    let a = open_stream(keys, id, &mut &blob[..], &mut direct);
    let mut copied = vec![0xAAu8; 3];
    let mut small = std::io::BufReader::with_capacity(1000, blob);
    let b = open_stream(keys, id, &mut small, &mut copied);
    match (&a, &b) {
        (Ok(()), Ok(())) => assert_eq!(direct, copied),
        (Err(x), Err(y)) => {
            assert_eq!(
                std::mem::discriminant(x),
                std::mem::discriminant(y),
                "{x} vs {y}"
            );
            assert!(direct.iter().chain(&copied).all(|&b| b == 0 || b == 0xAA));
        }
        _ => panic!("direct {a:?} vs buffered {b:?}"),
    }
    a.map(|()| direct)
}

fn open_range(keys: &KeyRing, blob: &[u8], start: u64, len: usize) -> Result<Vec<u8>> {
    let header = Header::parse(blob)?;
    let (first, last, bytes) = header.span(start, len as u64)?;
    let sk = SegmentKey::open(keys, header, id())?;
    let mut out = vec![0u8; len];
    let mut src = &blob[bytes.start as usize..];
    sk.open_segments(&mut src, first, last, &mut |i, p| {
        copy_overlap(i, p, start, &mut out);
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn round_trips_at_segment_boundaries() {
    let keys = ring(1, &[]);
    for len in [
        0,
        1,
        15,
        16,
        SEGMENT_LEN - 1,
        SEGMENT_LEN,
        SEGMENT_LEN + 1,
        3 * SEGMENT_LEN + 5,
    ] {
        let plain = data(len);
        let blob = seal(&keys, &plain);
        let header = Header::parse(&blob).unwrap();
        assert_eq!(blob.len() as u64, header.object_len(), "len {len}");
        assert_eq!(open(&keys, &blob).unwrap(), plain, "len {len}");
    }
}

#[test]
fn ciphertext_hides_the_plaintext_and_differs_each_time() {
    let keys = ring(1, &[]);
    let plain = b"DICM PATIENT^NAME".repeat(100);
    let a = seal(&keys, &plain);
    let b = seal(&keys, &plain);
    assert_ne!(a, b);
    assert!(!a.windows(4).any(|w| w == b"DICM"));
}

#[test]
fn range_reads_decrypt_only_covering_segments() {
    let keys = ring(1, &[]);
    let plain = data(4 * SEGMENT_LEN + 100);
    let blob = seal(&keys, &plain);
    for (start, len) in [
        (0, 1),
        (0, 6288),
        (SEGMENT_LEN - 3, 10),
        (2 * SEGMENT_LEN, SEGMENT_LEN + 50),
        (plain.len() - 1, 1),
    ] {
        let got = open_range(&keys, &blob, start as u64, len).unwrap();
        assert_eq!(got, &plain[start..start + len], "{start}+{len}");
    }
    // Corrupting a segment outside the range does not affect the range (by design, only
    // covering segments are read), but one inside does.
    let mut bad = blob.clone();
    let seg3 = Header::parse(&blob).unwrap().segment_offset(3) as usize;
    bad[seg3 + 5] ^= 1;
    assert!(open_range(&keys, &bad, 0, 10).is_ok());
    assert!(matches!(
        open_range(&keys, &bad, 3 * SEGMENT_LEN as u64, 10),
        Err(Error::Integrity)
    ));
    assert!(matches!(
        open_range(&keys, &blob, plain.len() as u64, 1),
        Err(Error::Range { .. })
    ));
}

#[test]
fn every_tampered_byte_is_refused() {
    let keys = ring(1, &[]);
    let plain = data(SEGMENT_LEN + 10);
    let blob = seal(&keys, &plain);
    // Every header byte and a sample of the body.
    let h = Header::parse(&blob).unwrap().header_len();
    let positions = (0..h).chain([h + 7, h + SEGMENT_LEN + 3, blob.len() - 1]);
    for at in positions {
        let mut bad = blob.clone();
        bad[at] ^= 0x40;
        assert!(open(&keys, &bad).is_err(), "flip at {at} accepted");
    }
}

#[test]
fn truncation_extension_and_segment_swaps_are_refused() {
    let keys = ring(1, &[]);
    let plain = data(3 * SEGMENT_LEN);
    let blob = seal(&keys, &plain);
    let header = Header::parse(&blob).unwrap();
    let h = header.header_len();
    for cut in [
        0,
        3,
        h - 1,
        h,
        h + 100,
        header.segment_offset(2) as usize,
        blob.len() - 1,
    ] {
        assert!(open(&keys, &blob[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(open(&keys, &longer), Err(Error::Truncated)));
    // Drop the last segment and mark the object one segment shorter: the header is
    // authenticated, so this fails at the wrap.
    let mut shorter = blob[..header.segment_offset(2) as usize].to_vec();
    shorter[8..16].copy_from_slice(&(2 * SEGMENT_LEN as u64).to_be_bytes());
    assert!(open(&keys, &shorter).is_err());
    // Swap segments 0 and 1.
    let (s0, s1) = (
        header.segment_offset(0) as usize,
        header.segment_offset(1) as usize,
    );
    let seg = SEGMENT_LEN + TAG_LEN;
    let mut swapped = blob.clone();
    swapped[s0..s0 + seg].copy_from_slice(&blob[s1..s1 + seg]);
    swapped[s1..s1 + seg].copy_from_slice(&blob[s0..s0 + seg]);
    assert!(matches!(open(&keys, &swapped), Err(Error::Integrity)));
}

#[test]
fn rotation_and_rekey() {
    let old = ring(1, &[]);
    let blob1 = seal(&old, b"under key one");
    let rotated = ring(2, &[1]);
    let blob2 = seal(&rotated, b"under key two");
    assert_eq!(Header::parse(&blob2).unwrap().key_id, 2);
    assert_eq!(open(&rotated, &blob1).unwrap(), b"under key one");
    assert_eq!(open(&rotated, &blob2).unwrap(), b"under key two");
    assert!(matches!(open(&old, &blob2), Err(Error::UnknownKey(2))));

    // Rekey blob1 to key 2: only the header changes, then key 1 can go.
    let header = Header::parse(&blob1).unwrap();
    let new = rewrap(&rotated, &header).unwrap();
    assert_eq!(new.key_id, 2);
    let mut rekeyed = new.encode();
    rekeyed.extend_from_slice(&blob1[header.header_len()..]);
    assert_eq!(open(&ring(2, &[]), &rekeyed).unwrap(), b"under key one");
    // Relabelling the wrapped key with another id fails (the id is in the wrap AAD).
    let mut relabelled = new.clone();
    relabelled.key_id = 1;
    let mut bad = relabelled.encode();
    bad.extend_from_slice(&blob1[header.header_len()..]);
    assert!(matches!(open(&rotated, &bad), Err(Error::Integrity)));
}

#[test]
fn objects_are_bound_to_their_uuid_and_content_type() {
    let keys = ring(1, &[]);
    let blob = seal(&keys, b"bound");
    assert_eq!(
        open_as(&keys, Identity::of(UUID, None), &blob).unwrap(),
        b"bound"
    );
    assert_eq!(
        open_as(
            &keys,
            Identity::of(&format!("17/df/{UUID}"), Some(1)),
            &blob
        )
        .unwrap(),
        b"bound",
        "the uuid is the last component of the name"
    );
    // Renamed (or swapped: another object's name).
    assert!(matches!(
        open_as(&keys, Identity::of(OTHER, Some(1)), &blob),
        Err(Error::Integrity)
    ));
    // Another content type than the one it was stored as.
    assert!(matches!(
        open_as(&keys, Identity::of(UUID, Some(3)), &blob),
        Err(Error::WrongContentType {
            stored: 1,
            asked: 3
        })
    ));
    // Editing the stored content type to match fails the tags.
    let mut edited = blob.clone();
    edited[43] = 3;
    assert!(matches!(
        open_as(&keys, Identity::of(UUID, Some(3)), &edited),
        Err(Error::Integrity)
    ));
    // Written without a content type (migrate): any type is accepted, the uuid still binds.
    let sk = SegmentKey::create(&keys, Identity::of(UUID, None), 5).unwrap();
    let mut unbound = Vec::new();
    seal_slice(&sk, b"plain", &mut unbound).unwrap();
    assert_eq!(
        open_as(&keys, Identity::of(UUID, Some(3)), &unbound).unwrap(),
        b"plain"
    );
    assert!(open_as(&keys, Identity::of(OTHER, Some(3)), &unbound).is_err());
}

#[test]
fn v2_objects_stay_readable_under_any_name() {
    let keys = ring(1, &[]);
    let plain = data(SEGMENT_LEN + 3);
    let sk = SegmentKey::create_v2(&keys, plain.len() as u64).unwrap();
    let mut blob = Vec::new();
    seal_slice(&sk, &plain, &mut blob).unwrap();
    assert_eq!(blob[4], VERSION_2);
    assert_eq!(blob.len(), V2_HEADER_LEN + plain.len() + 2 * TAG_LEN);
    assert_eq!(open(&keys, &blob).unwrap(), plain);
    assert_eq!(
        open_as(&keys, Identity::of(OTHER, Some(9)), &blob).unwrap(),
        plain
    );
    assert!(rewrap(&keys, &Header::parse(&blob).unwrap()).is_err());
}

#[test]
fn input_of_the_wrong_length_is_refused() {
    let keys = ring(1, &[]);
    let sk = |len| SegmentKey::create(&keys, id(), len).unwrap();
    let mut out = Vec::new();
    let r = seal_stream(&sk(10), &mut &b"short"[..], &mut out);
    assert!(matches!(r, Err(Error::InputLength { expected: 10 })));
    let r = seal_stream(&sk(2), &mut &b"longer"[..], &mut Vec::new());
    assert!(matches!(r, Err(Error::InputLength { expected: 2 })));
    let r = seal_slice(&sk(2), b"longer", &mut Vec::new());
    assert!(matches!(r, Err(Error::InputLength { expected: 2 })));
}

#[test]
fn sealing_into_a_slice_of_the_wrong_size_is_refused() {
    let keys = ring(1, &[]);
    let plain = data(100);
    let sk = SegmentKey::create(&keys, id(), 100).unwrap();
    let full = sk.header().object_len() as usize;
    for len in [0, full - 1, full + 1] {
        let mut out = vec![0u8; len];
        let r = seal_to_slice(&sk, &plain, &mut out);
        assert!(
            matches!(r, Err(Error::OutputLength { .. })),
            "out len {len}"
        );
    }
}
