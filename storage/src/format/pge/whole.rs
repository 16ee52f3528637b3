//! Whole objects: seal a plaintext (from a reader, into a writer, or slice to slice) and
//! open one from a buffered reader into a buffer sized from the header. Sealing slice to
//! slice, and opening what the reader already buffers, make one pass per segment; the
//! other forms add the copy their I/O needs. Nothing unverified is ever left in an output
//! buffer.

use std::io::{self, BufRead, Read, Write};

use aws_lc_rs::aead::Aad;

use super::{read_exact, Header, Identity, SegmentKey, SEGMENT_LEN, TAG_LEN};
use crate::keys::KeyWrapper;
use crate::{Error, Result};

/// Encrypt exactly `len` bytes from `src` into `out` as one object under `sk` (made by
/// [`SegmentKey::create`] for `len` bytes).
pub fn seal_stream(sk: &SegmentKey, src: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
    let len = sk.header.plaintext_len;
    let write = |e| Error::io("write", "object", e);
    out.write_all(&sk.header.encode()).map_err(write)?;
    let mut buf = vec![0u8; SEGMENT_LEN + TAG_LEN];
    for index in 0..sk.header.segments() {
        let n = sk.header.segment_plain_len(index);
        src.read_exact(&mut buf[..n]).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::InputLength { expected: len },
            _ => Error::io("read", "input", e),
        })?;
        sk.seal(index, &mut buf[..n + TAG_LEN])?;
        out.write_all(&buf[..n + TAG_LEN]).map_err(write)?;
    }
    if src
        .read(&mut buf[..1])
        .map_err(|e| Error::io("read", "input", e))?
        != 0
    {
        return Err(Error::InputLength { expected: len });
    }
    Ok(())
}

/// Where a whole plaintext goes: sized once its length is known (from the header).
pub trait PlainBuffer {
    fn allocate(&mut self, len: u64) -> Result<&mut [u8]>;
}

impl PlainBuffer for Vec<u8> {
    fn allocate(&mut self, len: u64) -> Result<&mut [u8]> {
        let len = usize::try_from(len).map_err(|_| Error::TooLarge(len))?;
        // Every byte is overwritten by verified plaintext or wiped on error, so reusing
        // the old contents is fine and spares a memset of the whole buffer.
        self.truncate(len);
        self.resize(len, 0);
        Ok(self.as_mut_slice())
    }
}

/// Encrypt `data` into `out` as one object. Same output as [`seal_stream`], without the
/// staging copy: segments are sealed straight from `data` into a segment-sized buffer.
pub fn seal_slice(sk: &SegmentKey, data: &[u8], out: &mut dyn Write) -> Result<()> {
    check_len(sk, data)?;
    let write = |e| Error::io("write", "object", e);
    out.write_all(&sk.header.encode()).map_err(write)?;
    let mut buf = vec![0u8; SEGMENT_LEN + TAG_LEN];
    for (index, chunk) in segments_of(data) {
        let sealed = &mut buf[..chunk.len() + TAG_LEN];
        sk.seal_from(index, chunk, sealed)?;
        out.write_all(sealed).map_err(write)?;
    }
    Ok(())
}

/// Encrypt `data` as one object into `out`, which must be exactly
/// [`Header::object_len`] bytes: one pass, no intermediate buffer (objects sealed in
/// memory, e.g. for one object-store PUT).
pub fn seal_to_slice(sk: &SegmentKey, data: &[u8], out: &mut [u8]) -> Result<()> {
    check_len(sk, data)?;
    let expected = sk.header.object_len();
    if out.len() as u64 != expected {
        return Err(Error::OutputLength {
            expected,
            got: out.len() as u64,
        });
    }
    let (head, mut rest) = out.split_at_mut(sk.header.header_len());
    head.copy_from_slice(&sk.header.encode());
    for (index, chunk) in segments_of(data) {
        let (sealed, tail) = std::mem::take(&mut rest).split_at_mut(chunk.len() + TAG_LEN);
        sk.seal_from(index, chunk, sealed)?;
        rest = tail;
    }
    Ok(())
}

fn check_len(sk: &SegmentKey, data: &[u8]) -> Result<()> {
    match data.len() as u64 == sk.header.plaintext_len {
        true => Ok(()),
        false => Err(Error::InputLength {
            expected: sk.header.plaintext_len,
        }),
    }
}

/// The segments of a plaintext with their indices; an empty plaintext is one empty segment.
fn segments_of(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let empty: &[u8] = &[];
    let chunks = data
        .chunks(SEGMENT_LEN)
        .chain(data.is_empty().then_some(empty));
    (0u64..).zip(chunks)
}

/// Read a whole object from `src` (positioned at its start): header, then every segment
/// into `buffer`. Trailing bytes are an error; on any error the whole buffer is wiped, so it
/// never holds unverified bytes. A segment that `src` already holds whole in its buffer
/// (always so for an object in memory, `&mut &blob[..]`) is opened straight from there into
/// its place: one pass. Otherwise it is read into its place and opened there.
pub fn open_stream(
    keys: &dyn KeyWrapper,
    id: Identity,
    src: &mut dyn BufRead,
    buffer: &mut dyn PlainBuffer,
) -> Result<()> {
    let header = Header::read_from(src)?;
    let sk = SegmentKey::open(keys, header, id)?;
    // In v3 the length is authenticated by the segment tags only (the key wrap may serve
    // several objects): open segment 0 before sizing the buffer from the header, so a
    // forged length cannot make us allocate. One extra copy of at most 64 KiB.
    let mut first = zeroize::Zeroizing::new(vec![0u8; sk.header.segment_plain_len(0) + TAG_LEN]);
    read_exact(src, &mut first)?;
    let n0 = sk.open_segment(0, &mut first)?.len();
    let out = buffer.allocate(sk.header.plaintext_len)?;
    let result = out
        .get_mut(..n0)
        .ok_or(Error::Crypto)
        .map(|dst| dst.copy_from_slice(&first[..n0]))
        .and_then(|()| open_into(&sk, src, out));
    if result.is_err() {
        out.fill(0);
    }
    result
}

fn open_into(sk: &SegmentKey, src: &mut dyn BufRead, out: &mut [u8]) -> Result<()> {
    let read_error = |e| Error::io("read", "object", e);
    for index in 1..sk.header.segments() {
        let at = (index * SEGMENT_LEN as u64) as usize;
        let n = sk.header.segment_plain_len(index);
        let dst = out.get_mut(at..at + n).ok_or(Error::Crypto)?;
        let (nonce, aad) = (sk.nonce(index), Aad::from(&sk.aad));
        let buffered = src.fill_buf().map_err(read_error)?;
        if let Some(sealed) = buffered.get(..n + TAG_LEN) {
            let (ct, tag) = sealed.split_at(n);
            sk.key
                .open_separate_gather(nonce, aad, ct, tag, dst)
                .map_err(|_| Error::Integrity)?;
            src.consume(n + TAG_LEN);
        } else {
            let mut tag = [0u8; TAG_LEN];
            read_exact(src, dst)?;
            read_exact(src, &mut tag)?;
            sk.key
                .open_in_place_separate_tag(nonce, aad, &tag, dst)
                .map_err(|_| Error::Integrity)?;
        }
    }
    match src.fill_buf().map_err(read_error)?.is_empty() {
        true => Ok(()),
        false => Err(Error::Truncated),
    }
}
