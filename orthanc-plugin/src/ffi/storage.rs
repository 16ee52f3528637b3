//! The four storage-area callbacks Orthanc calls (RegisterStorageArea2), each run inside
//! [`guard`]: pointers checked, panics caught, errors logged and mapped to Orthanc codes.

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use pacsgate_storage::format::pge::PlainBuffer;
use pacsgate_storage::Error;

use super::sdk::{allocate, log, log_error, release, MemoryBuffer64, SERVICE_LOG_WARNING};
use crate::plugin;

/// Run `f`, turning errors into logged Orthanc codes and panics into code 32.
pub(super) fn guard(
    op: &str,
    uuid: *const c_char,
    f: impl FnOnce(&str) -> Result<(), Error>,
) -> i32 {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if uuid.is_null() {
            return Err(Error::BadName(String::new()));
        }
        // SAFETY: Orthanc passes a NUL-terminated UUID valid for the call.
        let uuid = unsafe { CStr::from_ptr(uuid) }
            .to_str()
            .map_err(|_| Error::BadName("non-UTF-8".into()))?;
        f(uuid)
    }));
    if let Some(line) = plugin::stats_due() {
        log(SERVICE_LOG_WARNING, &line);
    }
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            log_error(&format!("{op} failed: {e}"));
            plugin::error_code(&e)
        }
        Err(_) => {
            log_error(&format!("{op} failed: internal error (panic)"));
            plugin::ERROR_STORAGE_AREA_PLUGIN
        }
    }
}

pub(super) unsafe extern "C" fn storage_create(
    uuid: *const c_char,
    content: *const c_void,
    size: i64,
    kind: i32,
) -> i32 {
    guard("create", uuid, |uuid| {
        let len = usize::try_from(size).map_err(|_| Error::BadHeader("negative size"))?;
        let data: &[u8] = if len == 0 {
            &[]
        } else if content.is_null() {
            return Err(Error::BadHeader("null content"));
        } else {
            // SAFETY: Orthanc guarantees `content` holds `size` bytes during the call.
            unsafe { std::slice::from_raw_parts(content.cast::<u8>(), len) }
        };
        plugin::create(uuid, kind, data)
    })
}

pub(super) unsafe extern "C" fn storage_read_whole(
    target: *mut MemoryBuffer64,
    uuid: *const c_char,
    kind: i32,
) -> i32 {
    if target.is_null() {
        return plugin::ERROR_STORAGE_AREA_PLUGIN;
    }
    let code = guard("read", uuid, |uuid| {
        plugin::read_whole(uuid, kind, &mut OrthancBuffer(target))
    });
    if code != 0 {
        release(target);
    }
    code
}

/// The readWhole answer: allocated by Orthanc (service 40) so that Orthanc can free it.
pub(super) struct OrthancBuffer(*mut MemoryBuffer64);

impl PlainBuffer for OrthancBuffer {
    fn allocate(&mut self, len: u64) -> Result<&mut [u8], Error> {
        allocate(self.0, len)
    }
}

pub(super) unsafe extern "C" fn storage_read_range(
    target: *mut MemoryBuffer64,
    uuid: *const c_char,
    kind: i32,
    start: u64,
) -> i32 {
    guard("read range", uuid, |uuid| {
        if target.is_null() {
            return Err(Error::BadHeader("null target"));
        }
        // SAFETY: for readRange Orthanc allocates `target` itself with `size` bytes to fill
        // (sdk.md, 3: memory ownership); it is ours to write during the call.
        let out = unsafe {
            let size =
                usize::try_from((*target).size).map_err(|_| Error::TooLarge((*target).size))?;
            if size == 0 {
                return Ok(());
            }
            if (*target).data.is_null() {
                return Err(Error::BadHeader("null target"));
            }
            std::slice::from_raw_parts_mut((*target).data.cast::<u8>(), size)
        };
        plugin::read_range(uuid, kind, start, out)
    })
}

pub(super) unsafe extern "C" fn storage_remove(uuid: *const c_char, _kind: i32) -> i32 {
    guard("remove", uuid, plugin::remove)
}
