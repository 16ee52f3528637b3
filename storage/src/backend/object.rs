//! Object storage (S3 and compatibles with a custom endpoint and path-style requests, Azure
//! Blob, GCS) through the `object_store` crate, behind the synchronous [`Backend`] trait.
//!
//! The storage layer is synchronous (Orthanc calls from its own threads), so this backend
//! owns a small private tokio runtime and blocks on it. Writes below [`PART_LEN`] are one
//! atomic PUT; larger ones a multipart upload, one part in memory at a time, that only
//! becomes visible on completion and is aborted if the writer is dropped.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
};
use tokio::runtime::Runtime;

use super::{is_object_name, Backend, PendingObject};
use crate::{Error, Result};

/// Multipart part size: above S3's 5 MiB minimum, and the most a write holds in memory.
pub const PART_LEN: usize = 8 << 20;
/// Start-up probe deadline: an unreachable store fails the start instead of retrying for
/// minutes.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    runtime: Runtime,
}

struct PendingUpload<'a> {
    backend: &'a ObjectBackend,
    path: Path,
    buf: Vec<u8>,
    upload: Option<Box<dyn MultipartUpload>>,
    done: bool,
}

struct StreamReader<'a> {
    runtime: &'a Runtime,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

fn backend_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { path, .. } => Error::NotFound(path),
        other => Error::Backend(other.to_string()),
    }
}

// === impl ObjectBackend ===

impl ObjectBackend {
    /// `url` like `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`;
    /// `options` are object_store configuration keys (`endpoint`, `allow_http`, `region`,
    /// `access_key_id`, `secret_access_key`, `use_emulator`, ...).
    pub fn new(url: &str, options: Vec<(String, String)>) -> Result<ObjectBackend> {
        let parsed = url::Url::parse(url).map_err(|e| Error::Backend(format!("{url}: {e}")))?;
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(backend_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacsgate-object-store")
            .enable_all()
            .build()
            .map_err(|e| Error::Backend(format!("cannot start the runtime: {e}")))?;
        Ok(ObjectBackend {
            store: Arc::from(store),
            prefix,
            url: url.to_string(),
            runtime,
        })
    }

    fn path(&self, name: &str) -> Path {
        name.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }
}

impl Backend for ObjectBackend {
    fn create(&self, name: &str, len: u64) -> Result<Box<dyn PendingObject + '_>> {
        // The first part (or the whole object) is buffered: size it once, no regrowth.
        let first = usize::try_from(len).map_or(PART_LEN, |l| l.min(PART_LEN));
        Ok(Box::new(PendingUpload {
            backend: self,
            path: self.path(name),
            buf: Vec::with_capacity(first),
            upload: None,
            done: false,
        }))
    }

    fn whole_put_limit(&self) -> u64 {
        PART_LEN as u64
    }

    fn put_whole(&self, name: &str, object: Vec<u8>) -> Result<()> {
        let path = self.path(name);
        let put = self.store.put(&path, PutPayload::from(object));
        self.runtime
            .block_on(put)
            .map(|_| ())
            .map_err(backend_error)
    }

    fn open(&self, name: &str, range: Option<Range<u64>>) -> Result<Box<dyn Read + Send + '_>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let path = self.path(name);
        let result = self
            .runtime
            .block_on(self.store.get_opts(&path, options))
            .map_err(backend_error)?;
        Ok(Box::new(StreamReader {
            runtime: &self.runtime,
            stream: result.into_stream(),
            current: Bytes::new(),
        }))
    }

    fn size(&self, name: &str) -> Result<u64> {
        let meta = self
            .runtime
            .block_on(self.store.head(&self.path(name)))
            .map_err(backend_error)?;
        Ok(meta.size)
    }

    fn remove(&self, name: &str) -> Result<()> {
        match self.runtime.block_on(self.store.delete(&self.path(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend_error(e)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let metas: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&self.prefix)).try_collect::<Vec<_>>())
            .map_err(backend_error)?;
        let mut names: Vec<String> = metas
            .into_iter()
            .filter_map(|m| {
                let rel: Vec<_> = m
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(rel.join("/"))
            })
            .filter(|n| is_object_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    fn check(&self) -> Result<()> {
        let probe = self.prefix.clone().join(".pacsgate-probe");
        let store = self.store.clone();
        let work = async move {
            store.put(&probe, PutPayload::from_static(b"probe")).await?;
            store.delete(&probe).await
        };
        match self
            .runtime
            .block_on(async { tokio::time::timeout(CHECK_TIMEOUT, work).await })
        {
            Ok(r) => r.map_err(backend_error),
            Err(_) => Err(Error::Backend(format!(
                "{}: no answer in {CHECK_TIMEOUT:?}",
                self.url
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("object store {}", self.url)
    }
}

// === impl PendingUpload ===

impl PendingUpload<'_> {
    fn send_part(&mut self, part: Vec<u8>) -> io::Result<()> {
        let rt = &self.backend.runtime;
        if self.upload.is_none() {
            let upload = rt
                .block_on(self.backend.store.put_multipart(&self.path))
                .map_err(io::Error::other)?;
            self.upload = Some(upload);
        }
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| io::Error::other("no upload"))?;
        rt.block_on(upload.put_part(PutPayload::from(part)))
            .map_err(io::Error::other)
    }
}

impl Write for PendingUpload<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART_LEN - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART_LEN {
            let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_LEN));
            self.send_part(part)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PendingObject for PendingUpload<'_> {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let rest = std::mem::take(&mut self.buf);
        let rt = &self.backend.runtime;
        let result = match self.upload.is_some() {
            false => rt
                .block_on(self.backend.store.put(&self.path, PutPayload::from(rest)))
                .map(|_| ()),
            true => {
                if !rest.is_empty() {
                    self.send_part(rest)
                        .map_err(|e| Error::Backend(e.to_string()))?;
                }
                match self.upload.as_mut() {
                    Some(upload) => rt.block_on(upload.complete()).map(|_| ()),
                    None => Ok(()),
                }
            }
        };
        result.map_err(backend_error)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for PendingUpload<'_> {
    fn drop(&mut self) {
        if let (false, Some(upload)) = (self.done, self.upload.as_mut()) {
            let _ = self.backend.runtime.block_on(upload.abort());
        }
    }
}

// === impl StreamReader ===

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pge;
    use crate::keys::{KeyRing, MasterKey};
    use crate::store::Store;

    /// Small objects go up in one PUT sealed in place, large ones as a multipart upload;
    /// both read back whole. (The real S3 server is exercised in tests/storage_s3.rs.)
    #[test]
    fn small_objects_in_one_put_large_ones_in_parts() {
        let backend = ObjectBackend::new("memory:///", Vec::new()).unwrap();
        let keys = KeyRing::new(MasterKey::from_bytes(1, [1; 32]).unwrap(), []);
        let store = Store::new(Arc::new(keys), Box::new(backend), 1 << 20);
        let name = "17/df/17dfc0b5-8b18-4a3c-9d2e-0123456789ab";
        for len in [0, 1000, PART_LEN - 200, PART_LEN + 1] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            store.put(name, 1, &plain).unwrap();
            // v3 with a local key: 50-byte header, 60-byte wrapped key.
            let segments = (len as u64).div_ceil(pge::SEGMENT_LEN as u64).max(1);
            assert_eq!(
                store.backend().size(name).unwrap(),
                110 + len as u64 + 16 * segments
            );
            let mut back = Vec::new();
            store.read_whole(name, Some(1), &mut back).unwrap();
            assert!(back == plain, "len {len}");
        }
    }
}
