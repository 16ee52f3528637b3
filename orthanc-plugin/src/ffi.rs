//! The FFI shell: the only `unsafe` code of the plugin.
//!
//! Types mirror `OrthancCPlugin.h` of Orthanc 1.10.1 (Debian `orthanc-dev`), hand-written
//! rather than generated: the SDK's functions are `static inline` wrappers around
//! `context->InvokeService(context, service_id, &params)`, which bindgen cannot emit, and
//! the existing crates are GPL or target later SDKs (reference/orthanc-plugin-sdk.md, 5).
//! Layouts are asserted at compile time for LP64.
//!
//! Every callback runs inside `catch_unwind`: a panic becomes an error code, never an
//! unwind into Orthanc's C++ frames.

#![allow(non_snake_case)]

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pacsgate_storage::format::v2::PlainBuffer;
use pacsgate_storage::Error;

use crate::plugin;

// --- OrthancCPlugin.h mirror -------------------------------------------------------------

#[repr(C)]
pub struct OrthancPluginContext {
    plugins_manager: *mut c_void,
    orthanc_version: *const c_char,
    free: Option<unsafe extern "C" fn(*mut c_void)>,
    invoke_service:
        Option<unsafe extern "C" fn(*mut OrthancPluginContext, i32, *const c_void) -> i32>,
}

#[repr(C)]
pub struct MemoryBuffer64 {
    data: *mut c_void,
    size: u64,
}

/// `_OrthancPluginRetrieveDynamicString`
#[repr(C)]
struct RetrieveDynamicString {
    result: *mut *mut c_char,
    argument: *const c_char,
}

/// `_OrthancPluginCreateMemoryBuffer64`
#[repr(C)]
struct CreateMemoryBuffer64 {
    target: *mut MemoryBuffer64,
    size: u64,
}

/// `_OrthancPluginSetPluginProperty`
#[repr(C)]
struct SetPluginProperty {
    plugin: *const c_char,
    property: i32,
    value: *const c_char,
}

type StorageCreate = unsafe extern "C" fn(*const c_char, *const c_void, i64, i32) -> i32;
type StorageReadWhole = unsafe extern "C" fn(*mut MemoryBuffer64, *const c_char, i32) -> i32;
type StorageReadRange = unsafe extern "C" fn(*mut MemoryBuffer64, *const c_char, i32, u64) -> i32;
type StorageRemove = unsafe extern "C" fn(*const c_char, i32) -> i32;

/// `_OrthancPluginRegisterStorageArea2`
#[repr(C)]
struct RegisterStorageArea2 {
    create: StorageCreate,
    read_whole: StorageReadWhole,
    read_range: Option<StorageReadRange>,
    remove: StorageRemove,
}

/// `_OrthancPluginService` values (OrthancCPlugin.h, 1.10.1).
const SERVICE_LOG_INFO: i32 = 1;
const SERVICE_LOG_WARNING: i32 = 2;
const SERVICE_LOG_ERROR: i32 = 3;
const SERVICE_SET_PLUGIN_PROPERTY: i32 = 7;
const SERVICE_GET_CONFIGURATION: i32 = 13;
const SERVICE_CREATE_MEMORY_BUFFER64: i32 = 40;
const SERVICE_REGISTER_STORAGE_AREA2: i32 = 1016;
/// `OrthancPluginProperty_Description`
const PROPERTY_DESCRIPTION: i32 = 1;

const _: () = {
    assert!(std::mem::size_of::<OrthancPluginContext>() == 32);
    assert!(std::mem::offset_of!(OrthancPluginContext, invoke_service) == 24);
    assert!(std::mem::size_of::<MemoryBuffer64>() == 16);
    assert!(std::mem::size_of::<RetrieveDynamicString>() == 16);
    assert!(std::mem::size_of::<CreateMemoryBuffer64>() == 16);
    assert!(std::mem::size_of::<SetPluginProperty>() == 24);
    assert!(std::mem::size_of::<RegisterStorageArea2>() == 32);
};

static CONTEXT: AtomicPtr<OrthancPluginContext> = AtomicPtr::new(ptr::null_mut());

// --- services ------------------------------------------------------------------------------

/// Call a service with the context Orthanc gave to Initialize. Error 1 if there is none.
fn invoke(service: i32, params: *const c_void) -> i32 {
    let ctx = CONTEXT.load(Ordering::Acquire);
    if ctx.is_null() {
        return 1;
    }
    // SAFETY: `ctx` is the context Orthanc passed to OrthancPluginInitialize; Orthanc keeps
    // it valid until after OrthancPluginFinalize (which clears CONTEXT). `params` points to
    // the struct the service id expects, alive for the duration of the call.
    unsafe {
        match (*ctx).invoke_service {
            Some(f) => f(ctx, service, params),
            None => 1,
        }
    }
}

fn log(service: i32, msg: &str) {
    let text =
        CString::new(format!("{}: {}", plugin::NAME, msg.replace('\0', " "))).unwrap_or_default();
    // The log services take the message pointer itself as `params` (sdk.md, 2).
    invoke(service, text.as_ptr().cast());
}

fn log_error(msg: &str) {
    log(SERVICE_LOG_ERROR, msg);
}

/// Orthanc's configuration as JSON text (service 13; we free the string).
fn configuration() -> Result<String, String> {
    let mut result: *mut c_char = ptr::null_mut();
    let params = RetrieveDynamicString {
        result: &mut result,
        argument: ptr::null(),
    };
    let code = invoke(
        SERVICE_GET_CONFIGURATION,
        (&params as *const RetrieveDynamicString).cast(),
    );
    if code != 0 || result.is_null() {
        return Err(format!(
            "cannot read Orthanc's configuration (error {code})"
        ));
    }
    // SAFETY: on success Orthanc stored a NUL-terminated string it allocated; we copy it
    // out and hand it back to the context's `free`, as OrthancPluginFreeString does.
    unsafe {
        let text = CStr::from_ptr(result).to_string_lossy().into_owned();
        let ctx = CONTEXT.load(Ordering::Acquire);
        if let Some(free) = (*ctx).free {
            free(result.cast());
        }
        Ok(text)
    }
}

fn orthanc_version(ctx: *mut OrthancPluginContext) -> String {
    // SAFETY: `ctx` is non-null (checked by the caller) and Orthanc fills orthancVersion
    // with a static NUL-terminated string.
    unsafe {
        let v = (*ctx).orthanc_version;
        if v.is_null() {
            return String::new();
        }
        CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

// --- entry points --------------------------------------------------------------------------

static NAME_C: &CStr = c"pacsgate-storage";
static VERSION_C: &CStr = {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    match CStr::from_bytes_with_nul(V.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("version contains NUL"),
    }
};

/// # Safety
/// Called by Orthanc once, with a valid context.
#[no_mangle]
pub unsafe extern "C" fn OrthancPluginInitialize(context: *mut OrthancPluginContext) -> i32 {
    if context.is_null() {
        return 1;
    }
    CONTEXT.store(context, Ordering::Release);
    let outcome = catch_unwind(AssertUnwindSafe(|| initialize(context)));
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            log_error(&format!("refusing to start, Orthanc will exit: {msg}"));
            1
        }
        Err(_) => {
            log_error("refusing to start: internal error (panic) during initialisation");
            1
        }
    }
}

fn initialize(context: *mut OrthancPluginContext) -> Result<(), String> {
    let version = orthanc_version(context);
    let summary = plugin::start(&version, &configuration()?)?;
    let description = c"Envelope-encrypting storage area (AES-256-GCM, master keys with ids)";
    let property = SetPluginProperty {
        plugin: NAME_C.as_ptr(),
        property: PROPERTY_DESCRIPTION,
        value: description.as_ptr(),
    };
    invoke(
        SERVICE_SET_PLUGIN_PROPERTY,
        (&property as *const SetPluginProperty).cast(),
    );
    let register = RegisterStorageArea2 {
        create: storage_create,
        read_whole: storage_read_whole,
        read_range: Some(storage_read_range),
        remove: storage_remove,
    };
    let code = invoke(
        SERVICE_REGISTER_STORAGE_AREA2,
        (&register as *const RegisterStorageArea2).cast(),
    );
    if code != 0 {
        plugin::stop();
        return Err(format!(
            "Orthanc refused the storage area (error {code}); is another storage plugin loaded?"
        ));
    }
    log(SERVICE_LOG_WARNING, &summary);
    Ok(())
}

#[no_mangle]
pub extern "C" fn OrthancPluginFinalize() {
    let _ = catch_unwind(|| {
        log(SERVICE_LOG_INFO, "finalize");
        plugin::stop();
    });
    CONTEXT.store(ptr::null_mut(), Ordering::Release);
}

#[no_mangle]
pub extern "C" fn OrthancPluginGetName() -> *const c_char {
    NAME_C.as_ptr()
}

#[no_mangle]
pub extern "C" fn OrthancPluginGetVersion() -> *const c_char {
    VERSION_C.as_ptr()
}

// --- storage callbacks ---------------------------------------------------------------------

/// Run `f`, turning errors into logged Orthanc codes and panics into code 32.
fn guard(op: &str, uuid: *const c_char, f: impl FnOnce(&str) -> Result<(), Error>) -> i32 {
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

unsafe extern "C" fn storage_create(
    uuid: *const c_char,
    content: *const c_void,
    size: i64,
    _kind: i32,
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
        plugin::create(uuid, data)
    })
}

unsafe extern "C" fn storage_read_whole(
    target: *mut MemoryBuffer64,
    uuid: *const c_char,
    _kind: i32,
) -> i32 {
    if target.is_null() {
        return plugin::ERROR_STORAGE_AREA_PLUGIN;
    }
    let code = guard("read", uuid, |uuid| {
        plugin::read_whole(uuid, &mut OrthancBuffer(target))
    });
    if code != 0 {
        release(target);
    }
    code
}

/// The readWhole answer: allocated by Orthanc (service 40) so that Orthanc can free it.
struct OrthancBuffer(*mut MemoryBuffer64);

impl PlainBuffer for OrthancBuffer {
    fn allocate(&mut self, len: u64) -> Result<&mut [u8], Error> {
        allocate(self.0, len)
    }
}

fn allocate<'a>(target: *mut MemoryBuffer64, len: u64) -> Result<&'a mut [u8], Error> {
    let params = CreateMemoryBuffer64 { target, size: len };
    if invoke(
        SERVICE_CREATE_MEMORY_BUFFER64,
        (&params as *const CreateMemoryBuffer64).cast(),
    ) != 0
    {
        return Err(Error::TooLarge(len));
    }
    let len = usize::try_from(len).map_err(|_| Error::TooLarge(len))?;
    // SAFETY: `target` is Orthanc's buffer descriptor for this call; after a successful
    // CreateMemoryBuffer64 its `data` holds `len` bytes (or is null for len 0), valid until
    // Orthanc frees it after the callback returns. Nothing else aliases it meanwhile.
    unsafe {
        let data = (*target).data;
        if len == 0 || data.is_null() {
            return if len == 0 {
                Ok(&mut [])
            } else {
                Err(Error::TooLarge(len as u64))
            };
        }
        Ok(std::slice::from_raw_parts_mut(data.cast::<u8>(), len))
    }
}

/// On failure Orthanc does not take the buffer: wipe and free it ourselves.
fn release(target: *mut MemoryBuffer64) {
    // SAFETY: `target` is non-null (checked by the caller); if `data` is set it came from
    // CreateMemoryBuffer64 (malloc'd by Orthanc, freed with the context's `free`).
    unsafe {
        let data = (*target).data;
        if !data.is_null() {
            ptr::write_bytes(data.cast::<u8>(), 0, (*target).size as usize);
            let ctx = CONTEXT.load(Ordering::Acquire);
            if let Some(free) = ctx.as_ref().and_then(|c| c.free) {
                free(data);
            }
        }
        (*target).data = ptr::null_mut();
        (*target).size = 0;
    }
}

unsafe extern "C" fn storage_read_range(
    target: *mut MemoryBuffer64,
    uuid: *const c_char,
    _kind: i32,
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
        plugin::read_range(uuid, start, out)
    })
}

unsafe extern "C" fn storage_remove(uuid: *const c_char, _kind: i32) -> i32 {
    guard("remove", uuid, plugin::remove)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our hand-written ids against Debian's OrthancCPlugin.h (orthanc-dev, installed by
    /// tests/run.sh).
    #[test]
    fn service_ids_match_the_sdk_header() {
        let header = std::fs::read_to_string("/usr/include/orthanc/OrthancCPlugin.h")
            .expect("orthanc-dev's OrthancCPlugin.h; run tests/run.sh");
        for (name, value) in [
            ("_OrthancPluginService_LogInfo", SERVICE_LOG_INFO),
            ("_OrthancPluginService_LogWarning", SERVICE_LOG_WARNING),
            ("_OrthancPluginService_LogError", SERVICE_LOG_ERROR),
            (
                "_OrthancPluginService_SetPluginProperty",
                SERVICE_SET_PLUGIN_PROPERTY,
            ),
            (
                "_OrthancPluginService_GetConfiguration",
                SERVICE_GET_CONFIGURATION,
            ),
            (
                "_OrthancPluginService_CreateMemoryBuffer64",
                SERVICE_CREATE_MEMORY_BUFFER64,
            ),
            (
                "_OrthancPluginService_RegisterStorageArea2",
                SERVICE_REGISTER_STORAGE_AREA2,
            ),
            ("_OrthancPluginProperty_Description", PROPERTY_DESCRIPTION),
            (
                "OrthancPluginErrorCode_InexistentFile",
                plugin::ERROR_INEXISTENT_FILE,
            ),
            (
                "OrthancPluginErrorCode_StorageAreaPlugin",
                plugin::ERROR_STORAGE_AREA_PLUGIN,
            ),
        ] {
            let needle = format!("{name} = {value}");
            assert!(
                header.lines().any(|l| l.trim_start().starts_with(&needle)
                    && l.trim_start()[needle.len()..].starts_with(|c: char| !c.is_ascii_digit())),
                "{needle} not in OrthancCPlugin.h"
            );
        }
    }
}
