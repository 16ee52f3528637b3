use super::*;
use crate::keys::{KeyRing, MasterKey};

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
    let mut a = Vec::new();
    seal_stream(keys, plain.len() as u64, &mut &plain[..], &mut a).unwrap();
    let mut b = Vec::new();
    seal_slice(keys, plain, &mut b).unwrap();
    let mut c = vec![0u8; object_len(plain.len() as u64) as usize];
    seal_to_slice(keys, plain, &mut c).unwrap();
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
    let mut direct = Vec::new();
    let a = open_stream(keys, &mut &blob[..], &mut direct);
    let mut copied = vec![0xAAu8; 3];
    let mut small = std::io::BufReader::with_capacity(1000, blob);
    let b = open_stream(keys, &mut small, &mut copied);
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
    let sk = SegmentKey::open(keys, header)?;
    let (first, last, bytes) = header.span(start, len as u64)?;
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
    let positions =
        (0..HEADER_LEN).chain([HEADER_LEN + 7, HEADER_LEN + SEGMENT_LEN + 3, blob.len() - 1]);
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
    for cut in [
        0,
        3,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 100,
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
    let new = rewrap(&rotated, &header, 2).unwrap();
    let mut rekeyed = new.encode().to_vec();
    rekeyed.extend_from_slice(&blob1[HEADER_LEN..]);
    assert_eq!(rekeyed[HEADER_LEN..], blob1[HEADER_LEN..]);
    assert_eq!(open(&ring(2, &[]), &rekeyed).unwrap(), b"under key one");
}

#[test]
fn input_of_the_wrong_length_is_refused() {
    let keys = ring(1, &[]);
    let mut out = Vec::new();
    let r = seal_stream(&keys, 10, &mut &b"short"[..], &mut out);
    assert!(matches!(r, Err(Error::InputLength { expected: 10 })));
    let r = seal_stream(&keys, 2, &mut &b"longer"[..], &mut Vec::new());
    assert!(matches!(r, Err(Error::InputLength { expected: 2 })));
}

#[test]
fn sealing_into_a_slice_of_the_wrong_size_is_refused() {
    let keys = ring(1, &[]);
    let plain = data(100);
    for len in [
        0,
        object_len(100) as usize - 1,
        object_len(100) as usize + 1,
    ] {
        let mut out = vec![0u8; len];
        let r = seal_to_slice(&keys, &plain, &mut out);
        assert!(
            matches!(r, Err(Error::OutputLength { .. })),
            "out len {len}"
        );
    }
}
