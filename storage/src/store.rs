//! [`Store`]: encrypted objects in a backend, read and written by name. What the Orthanc
//! plugin and the CLI call.

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex};

use crate::backend::Backend;
use crate::format::v2::PlainBuffer;
use crate::format::{self, a1, v2, Kind};
use crate::keys::KeyWrapper;
use crate::{Error, Result};

/// What an object is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    pub kind: Kind,
    pub key_id: Option<u32>,
    /// Known without decrypting for v2 objects.
    pub plaintext_len: Option<u64>,
}

pub struct Store {
    keys: Arc<dyn KeyWrapper>,
    backend: Box<dyn Backend>,
    /// A1 objects are one GCM message and must be held whole: bound the bytes held at once
    /// (`MaxConcurrentInputSize`). v2 objects stream and need no budget.
    a1_budget: Budget,
}

// === impl Store ===

impl Store {
    pub fn new(keys: Arc<dyn KeyWrapper>, backend: Box<dyn Backend>, a1_limit: u64) -> Store {
        Store {
            keys,
            backend,
            a1_budget: Budget::new(a1_limit),
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn keys(&self) -> &dyn KeyWrapper {
        self.keys.as_ref()
    }

    /// Encrypt `data` and store it as `name`, replacing any previous object atomically.
    pub fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        let len = v2::object_len(data.len() as u64);
        if len <= self.backend.whole_put_limit() {
            // Small enough for one request: seal in one pass into the request body.
            let mut object = vec![0u8; len as usize];
            v2::seal_to_slice(self.keys.as_ref(), data, &mut object)?;
            return self.backend.put_whole(name, object);
        }
        let mut pending = self.backend.create(name, len)?;
        v2::seal_slice(self.keys.as_ref(), data, &mut pending)?;
        pending.commit()
    }

    /// Encrypt exactly `len` bytes from `src`.
    pub fn put_reader(&self, name: &str, len: u64, src: &mut dyn Read) -> Result<()> {
        let mut pending = self.backend.create(name, v2::object_len(len))?;
        v2::seal_stream(self.keys.as_ref(), len, src, &mut pending)?;
        pending.commit()
    }

    /// Decrypt all of `name` into `buffer`, sized from the header.
    pub fn read_whole(&self, name: &str, buffer: &mut dyn PlainBuffer) -> Result<()> {
        let mut src = self.backend.open(name, None)?;
        let (head, got) = read_prefix(src.as_mut())?;
        // One segment with its tag fits the buffer, so each is opened straight from it.
        let capacity = v2::SEGMENT_LEN + v2::TAG_LEN;
        let mut src = BufReader::with_capacity(capacity, (&head[..got]).chain(src));
        match format::detect(&head[..got]) {
            Kind::V2 => v2::open_stream(self.keys.as_ref(), &mut src, buffer),
            Kind::A1 => {
                let plain = self.read_a1(name, &mut src)?;
                buffer.allocate(plain.len() as u64)?.copy_from_slice(&plain);
                Ok(())
            }
            Kind::Other => Err(Error::UnknownFormat),
        }
    }

    /// Decrypt bytes `start..start+out.len()` of `name` into `out`, opening only the
    /// segments that cover them.
    pub fn read_range(&self, name: &str, start: u64, out: &mut [u8]) -> Result<()> {
        let mut src = self.backend.open(name, Some(0..v2::HEADER_LEN as u64))?;
        let (head, got) = read_prefix(src.as_mut())?;
        drop(src);
        match format::detect(&head[..got]) {
            Kind::V2 => {
                let header = v2::Header::parse(&head[..got])?;
                let sk = v2::SegmentKey::open(self.keys.as_ref(), header)?;
                let (first, last, bytes) = header.span(start, out.len() as u64)?;
                let mut src = self.backend.open(name, Some(bytes))?;
                sk.open_segments(src.as_mut(), first, last, &mut |index, plain| {
                    v2::copy_overlap(index, plain, start, out);
                    Ok(())
                })
            }
            Kind::A1 => {
                let mut src = self.backend.open(name, None)?;
                let plain = self.read_a1(name, src.as_mut())?;
                let range = usize::try_from(start)
                    .ok()
                    .and_then(|s| Some(s..s.checked_add(out.len())?))
                    .filter(|r| r.end <= plain.len())
                    .ok_or(Error::Range {
                        start,
                        len: out.len() as u64,
                        size: plain.len() as u64,
                    })?;
                out.copy_from_slice(&plain[range]);
                Ok(())
            }
            Kind::Other => Err(Error::UnknownFormat),
        }
    }

    /// Decrypt `name` to `out` segment by segment (CLI decrypt and verify). On error,
    /// `out` may hold verified plaintext of the segments before the failure.
    pub fn decrypt_to(&self, name: &str, out: &mut dyn Write) -> Result<ObjectInfo> {
        let mut src = self.backend.open(name, None)?;
        let (head, got) = read_prefix(src.as_mut())?;
        let write = |e| Error::io("write", "output", e);
        match format::detect(&head[..got]) {
            Kind::V2 => {
                let header = v2::Header::parse(&head[..got])?;
                let sk = v2::SegmentKey::open(self.keys.as_ref(), header)?;
                sk.open_segments(src.as_mut(), 0, header.segments() - 1, &mut |_, plain| {
                    out.write_all(plain).map_err(write)
                })?;
                if src
                    .read(&mut [0u8; 1])
                    .map_err(|e| Error::io("read", name, e))?
                    != 0
                {
                    return Err(Error::Truncated);
                }
                Ok(info_v2(&header))
            }
            Kind::A1 => {
                let key_id = a1::key_id(&head[..got])?;
                let plain = self.read_a1(name, &mut (&head[..got]).chain(src))?;
                out.write_all(&plain).map_err(write)?;
                Ok(ObjectInfo {
                    kind: Kind::A1,
                    key_id: Some(key_id),
                    plaintext_len: Some(plain.len() as u64),
                })
            }
            Kind::Other => Err(Error::UnknownFormat),
        }
    }

    /// Header facts without decrypting.
    pub fn inspect(&self, name: &str) -> Result<ObjectInfo> {
        let mut src = self.backend.open(name, Some(0..v2::HEADER_LEN as u64))?;
        let (head, got) = read_prefix(src.as_mut())?;
        let kind = format::detect(&head[..got]);
        Ok(match kind {
            Kind::V2 => info_v2(&v2::Header::parse(&head[..got])?),
            Kind::A1 => ObjectInfo {
                kind,
                key_id: Some(a1::key_id(&head[..got])?),
                plaintext_len: None,
            },
            Kind::Other => ObjectInfo {
                kind,
                key_id: None,
                plaintext_len: None,
            },
        })
    }

    /// Move a v2 object's data key under the current master key, copying the segments
    /// unchanged. Returns false when it already was there.
    pub fn rekey(&self, name: &str) -> Result<bool> {
        let mut src = self.backend.open(name, None)?;
        let mut head = [0u8; v2::HEADER_LEN];
        src.read_exact(&mut head).map_err(|_| Error::Truncated)?;
        let header = v2::Header::parse(&head)?;
        let current = self.keys.current_id();
        if header.key_id == current {
            return Ok(false);
        }
        let new = v2::rewrap(self.keys.as_ref(), &header, current)?;
        let mut pending = self.backend.create(name, header.object_len())?;
        pending
            .write_all(&new.encode())
            .map_err(|e| Error::io("write", name, e))?;
        let copied =
            std::io::copy(&mut src, &mut pending).map_err(|e| Error::io("copy", name, e))?;
        if copied + v2::HEADER_LEN as u64 != header.object_len() {
            return Err(Error::Truncated);
        }
        pending.commit()?;
        Ok(true)
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        self.backend.remove(name)
    }

    /// A1 objects are one GCM message: wait until the whole object fits the budget, then
    /// read and decrypt it in place (the blob is the only copy while it is held).
    fn read_a1(&self, name: &str, src: &mut dyn Read) -> Result<Vec<u8>> {
        let limit = self.a1_budget.limit;
        let size = self.backend.size(name)?;
        if size > limit {
            return Err(Error::TooLarge(size));
        }
        let _held = self.a1_budget.acquire(size);
        let mut blob = Vec::with_capacity(size as usize);
        src.take(size)
            .read_to_end(&mut blob)
            .map_err(|e| Error::io("read", name, e))?;
        a1::decrypt(self.keys.as_ref(), blob)
    }
}

fn info_v2(header: &v2::Header) -> ObjectInfo {
    ObjectInfo {
        kind: Kind::V2,
        key_id: Some(header.key_id),
        plaintext_len: Some(header.plaintext_len),
    }
}

/// Read up to a v2 header's worth of bytes (fewer only at the end of the object).
fn read_prefix(src: &mut dyn Read) -> Result<([u8; v2::HEADER_LEN], usize)> {
    let mut head = [0u8; v2::HEADER_LEN];
    let mut got = 0;
    while got < head.len() {
        match src.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", "object", e)),
        }
    }
    Ok((head, got))
}

// === impl Budget ===

/// A byte-counting semaphore.
struct Budget {
    limit: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

struct Held<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Wait until `bytes` (at most `limit`) fit.
    fn acquire(&self, bytes: u64) -> Held<'_> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used + bytes > self.limit && *used > 0 {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += bytes;
        Held {
            budget: self,
            bytes,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|p| p.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}
