//! [`Store`]: encrypted objects in a backend, read and written by name. What the Orthanc
//! plugin and the CLI call.

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Condvar, Mutex};

use crate::backend::Backend;
use crate::format::pge::{self, Header, Identity, PlainBuffer, SegmentKey};
use crate::format::{self, a1, Kind};
use crate::keys::KeyWrapper;
use crate::{Error, Result};

/// What an object is, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    pub kind: Kind,
    pub key_id: Option<u32>,
    /// Known without decrypting for v2 and v3 objects.
    pub plaintext_len: Option<u64>,
    /// v3: the content type the object is bound to (0: written without one).
    pub content_type: Option<u32>,
}

pub struct Store {
    keys: Arc<dyn KeyWrapper>,
    backend: Box<dyn Backend>,
    /// A1 objects are one GCM message and must be held whole: bound the bytes held at once
    /// (`MaxConcurrentInputSize`); so are v2 objects while `migrate` upgrades them. v3
    /// objects stream and need no budget.
    a1_budget: Budget,
    /// Refuse v2 and A1 objects on the plugin's read paths (`AcceptUnboundFormats: false`).
    refuse_unbound: bool,
}

// === impl Store ===

impl Store {
    pub fn new(keys: Arc<dyn KeyWrapper>, backend: Box<dyn Backend>, a1_limit: u64) -> Store {
        Store {
            keys,
            backend,
            a1_budget: Budget::new(a1_limit),
            refuse_unbound: false,
        }
    }

    /// Refuse objects that are not bound to their name (v2, A1) in `read_whole` and
    /// `read_range`: once `migrate` has upgraded a storage, an old v2 or A1 copy of another
    /// attachment put back under some name would otherwise still decrypt (a downgrade of
    /// the swap protection). `decrypt_to` (the CLI) still reads them, so `migrate` works.
    pub fn refuse_unbound(mut self, refuse: bool) -> Store {
        self.refuse_unbound = refuse;
        self
    }

    fn check_bound(&self, kind: Kind) -> Result<()> {
        match (self.refuse_unbound, kind) {
            (true, Kind::V2 | Kind::A1) => Err(Error::Unbound(kind.name())),
            _ => Ok(()),
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    pub fn keys(&self) -> &dyn KeyWrapper {
        self.keys.as_ref()
    }

    /// Encrypt `data` and store it as `name` (v3, bound to the name's uuid and to
    /// `content_type`), replacing any previous object atomically.
    pub fn put(&self, name: &str, content_type: u32, data: &[u8]) -> Result<()> {
        let id = Identity::of(name, Some(content_type));
        let sk = SegmentKey::create(self.keys.as_ref(), id, data.len() as u64)?;
        let len = sk.header().object_len();
        if len <= self.backend.whole_put_limit() {
            // Small enough for one request: seal in one pass into the request body.
            let mut object = vec![0u8; len as usize];
            pge::seal_to_slice(&sk, data, &mut object)?;
            return self.backend.put_whole(name, object);
        }
        let mut pending = self.backend.create(name, len)?;
        pge::seal_slice(&sk, data, &mut pending)?;
        pending.commit()
    }

    /// Encrypt exactly `len` bytes from `src`.
    pub fn put_reader(
        &self,
        name: &str,
        content_type: u32,
        len: u64,
        src: &mut dyn Read,
    ) -> Result<()> {
        let id = Identity::of(name, Some(content_type));
        let sk = SegmentKey::create(self.keys.as_ref(), id, len)?;
        let mut pending = self.backend.create(name, sk.header().object_len())?;
        pge::seal_stream(&sk, src, &mut pending)?;
        pending.commit()
    }

    /// Decrypt all of `name` into `buffer`, sized from the header. `content_type`: what the
    /// caller expects (Orthanc's), `None` to accept the stored one.
    pub fn read_whole(
        &self,
        name: &str,
        content_type: Option<u32>,
        buffer: &mut dyn PlainBuffer,
    ) -> Result<()> {
        let mut src = self.backend.open(name, None)?;
        let (head, got) = read_prefix(src.as_mut())?;
        // One segment with its tag fits the buffer, so each is opened straight from it.
        let capacity = pge::SEGMENT_LEN + pge::TAG_LEN;
        let mut src = BufReader::with_capacity(capacity, (&head[..got]).chain(src));
        self.check_bound(format::detect(&head[..got]))?;
        match format::detect(&head[..got]) {
            Kind::V3 | Kind::V2 => {
                let id = Identity::of(name, content_type);
                pge::open_stream(self.keys.as_ref(), id, &mut src, buffer)
            }
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
    pub fn read_range(
        &self,
        name: &str,
        content_type: Option<u32>,
        start: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let mut src = self.backend.open(name, Some(0..pge::HEADER_MAX as u64))?;
        let (head, got) = read_prefix(src.as_mut())?;
        drop(src);
        self.check_bound(format::detect(&head[..got]))?;
        match format::detect(&head[..got]) {
            Kind::V3 | Kind::V2 => {
                let header = Header::parse(&head[..got])?;
                let (first, last, bytes) = header.span(start, out.len() as u64)?;
                let sk =
                    SegmentKey::open(self.keys.as_ref(), header, Identity::of(name, content_type))?;
                let mut src = self.backend.open(name, Some(bytes))?;
                sk.open_segments(src.as_mut(), first, last, &mut |index, plain| {
                    pge::copy_overlap(index, plain, start, out);
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
    pub fn decrypt_to(
        &self,
        name: &str,
        content_type: Option<u32>,
        out: &mut dyn Write,
    ) -> Result<ObjectInfo> {
        self.decrypt_named(name, name, content_type, out)
    }

    /// [`Store::decrypt_to`] of `name` as if it were stored as `bound_to` (the CLI's
    /// `decrypt --name` for a renamed loose file).
    pub fn decrypt_named(
        &self,
        name: &str,
        bound_to: &str,
        content_type: Option<u32>,
        out: &mut dyn Write,
    ) -> Result<ObjectInfo> {
        let mut src = self.backend.open(name, None)?;
        let (head, got) = read_prefix(src.as_mut())?;
        let write = |e| Error::io("write", "output", e);
        match format::detect(&head[..got]) {
            kind @ (Kind::V3 | Kind::V2) => {
                let header = Header::parse(&head[..got])?;
                let info = info_pge(kind, &header);
                let mut src = (&head[header.header_len().min(got)..got]).chain(src);
                let last = header.segments() - 1;
                let id = Identity::of(bound_to, content_type);
                let sk = SegmentKey::open(self.keys.as_ref(), header, id)?;
                sk.open_segments(&mut src, 0, last, &mut |_, plain| {
                    out.write_all(plain).map_err(write)
                })?;
                if src
                    .read(&mut [0u8; 1])
                    .map_err(|e| Error::io("read", name, e))?
                    != 0
                {
                    return Err(Error::Truncated);
                }
                Ok(info)
            }
            Kind::A1 => {
                let key_id = a1::key_id(&head[..got])?;
                let plain = self.read_a1(name, &mut (&head[..got]).chain(src))?;
                out.write_all(&plain).map_err(write)?;
                Ok(ObjectInfo {
                    kind: Kind::A1,
                    key_id: Some(key_id),
                    plaintext_len: Some(plain.len() as u64),
                    content_type: None,
                })
            }
            Kind::Other => Err(Error::UnknownFormat),
        }
    }

    /// Header facts without decrypting.
    pub fn inspect(&self, name: &str) -> Result<ObjectInfo> {
        let mut src = self.backend.open(name, Some(0..pge::HEADER_MAX as u64))?;
        let (head, got) = read_prefix(src.as_mut())?;
        let kind = format::detect(&head[..got]);
        Ok(match kind {
            Kind::V3 | Kind::V2 => info_pge(kind, &Header::parse(&head[..got])?),
            Kind::A1 => ObjectInfo {
                kind,
                key_id: Some(a1::key_id(&head[..got])?),
                plaintext_len: None,
                content_type: None,
            },
            Kind::Other => ObjectInfo {
                kind,
                key_id: None,
                plaintext_len: None,
                content_type: None,
            },
        })
    }

    /// Move an object's data key under the current master key. v3: rewrap, segments copied
    /// unchanged. v2 (no room for a remote key's blob, no identity binding): decrypted and
    /// re-encrypted as v3 (content type 0: not known offline). Returns false when the object
    /// already was v3 under the current key.
    pub fn rekey(&self, name: &str) -> Result<bool> {
        let mut src = self.backend.open(name, None)?;
        let header = Header::read_from(src.as_mut())?;
        if header.version == pge::VERSION_2 {
            drop(src);
            self.upgrade(name)?;
            return Ok(true);
        }
        if header.key_id == self.keys.current_id() {
            return Ok(false);
        }
        let new = pge::rewrap(self.keys.as_ref(), &header)?;
        let mut pending = self.backend.create(name, new.object_len())?;
        pending
            .write_all(&new.encode())
            .map_err(|e| Error::io("write", name, e))?;
        let copied =
            std::io::copy(&mut src, &mut pending).map_err(|e| Error::io("copy", name, e))?;
        if copied + header.header_len() as u64 != header.object_len() {
            return Err(Error::Truncated);
        }
        pending.commit()?;
        Ok(true)
    }

    /// Re-encrypt a v2 or A1 object as v3 under the current key (held whole, at most
    /// `MaxConcurrentInputSize`). The content type is not known offline: 0.
    pub fn upgrade(&self, name: &str) -> Result<()> {
        // Not through the budget: an A1 read takes it itself (and the CLI runs one at a time).
        let size = self.backend.size(name)?;
        if size > self.a1_budget.limit {
            return Err(Error::TooLarge(size));
        }
        let mut plain = zeroize::Zeroizing::new(Vec::new());
        self.read_whole(name, None, &mut *plain)?;
        self.put(name, 0, &plain)
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

fn info_pge(kind: Kind, header: &Header) -> ObjectInfo {
    ObjectInfo {
        kind,
        key_id: Some(header.key_id),
        plaintext_len: Some(header.plaintext_len),
        content_type: (kind == Kind::V3).then_some(header.content_type),
    }
}

/// Read up to the largest header's worth of bytes (fewer only at the end of the object).
fn read_prefix(src: &mut dyn Read) -> Result<(Vec<u8>, usize)> {
    let mut head = vec![0u8; pge::HEADER_MAX];
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
