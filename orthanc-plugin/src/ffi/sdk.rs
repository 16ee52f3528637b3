//! The mirror of the few `OrthancCPlugin.h` items the plugin uses (Orthanc 1.10.1 SDK,
//! Debian `orthanc-dev`), with layouts asserted at compile time for LP64, and the calls
//! into Orthanc through the context's `InvokeService` (log, configuration, buffers).

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pacsgate_storage::Error;

use crate::plugin;

// --- OrthancCPlugin.h mirror -------------------------------------------------------------

#[repr(C)]
pub struct OrthancPluginContext {
    pub(super) plugins_manager: *mut c_void,
    pub(super) orthanc_version: *const c_char,
    pub(super) free: Option<unsafe extern "C" fn(*mut c_void)>,
    invoke_service:
        Option<unsafe extern "C" fn(*mut OrthancPluginContext, i32, *const c_void) -> i32>,
}

#[repr(C)]
pub struct MemoryBuffer64 {
    pub(super) data: *mut c_void,
    pub(super) size: u64,
}

/// `_OrthancPluginRetrieveDynamicString`
#[repr(C)]
pub(super) struct RetrieveDynamicString {
    pub(super) result: *mut *mut c_char,
    pub(super) argument: *const c_char,
}

/// `_OrthancPluginCreateMemoryBuffer64`
#[repr(C)]
pub(super) struct CreateMemoryBuffer64 {
    pub(super) target: *mut MemoryBuffer64,
    pub(super) size: u64,
}

/// `_OrthancPluginSetPluginProperty`
#[repr(C)]
pub(super) struct SetPluginProperty {
    pub(super) plugin: *const c_char,
    pub(super) property: i32,
    pub(super) value: *const c_char,
}

pub(super) type StorageCreate = unsafe extern "C" fn(*const c_char, *const c_void, i64, i32) -> i32;
pub(super) type StorageReadWhole =
    unsafe extern "C" fn(*mut MemoryBuffer64, *const c_char, i32) -> i32;
pub(super) type StorageReadRange =
    unsafe extern "C" fn(*mut MemoryBuffer64, *const c_char, i32, u64) -> i32;
pub(super) type StorageRemove = unsafe extern "C" fn(*const c_char, i32) -> i32;

/// `_OrthancPluginRegisterStorageArea2`
#[repr(C)]
pub(super) struct RegisterStorageArea2 {
    pub(super) create: StorageCreate,
    pub(super) read_whole: StorageReadWhole,
    pub(super) read_range: Option<StorageReadRange>,
    pub(super) remove: StorageRemove,
}

/// `_OrthancPluginService` values (OrthancCPlugin.h, 1.10.1).
pub(super) const SERVICE_LOG_INFO: i32 = 1;
pub(super) const SERVICE_LOG_WARNING: i32 = 2;
pub(super) const SERVICE_LOG_ERROR: i32 = 3;
pub(super) const SERVICE_SET_PLUGIN_PROPERTY: i32 = 7;
pub(super) const SERVICE_GET_CONFIGURATION: i32 = 13;
pub(super) const SERVICE_CREATE_MEMORY_BUFFER64: i32 = 40;
pub(super) const SERVICE_REGISTER_STORAGE_AREA2: i32 = 1016;
/// `OrthancPluginProperty_Description`
pub(super) const PROPERTY_DESCRIPTION: i32 = 1;

const _: () = {
    assert!(std::mem::size_of::<OrthancPluginContext>() == 32);
    assert!(std::mem::offset_of!(OrthancPluginContext, invoke_service) == 24);
    assert!(std::mem::size_of::<MemoryBuffer64>() == 16);
    assert!(std::mem::size_of::<RetrieveDynamicString>() == 16);
    assert!(std::mem::size_of::<CreateMemoryBuffer64>() == 16);
    assert!(std::mem::size_of::<SetPluginProperty>() == 24);
    assert!(std::mem::size_of::<RegisterStorageArea2>() == 32);
};

pub(super) static CONTEXT: AtomicPtr<OrthancPluginContext> = AtomicPtr::new(ptr::null_mut());

// --- services ------------------------------------------------------------------------------

/// Call a service with the context Orthanc gave to Initialize. Error 1 if there is none.
pub(super) fn invoke(service: i32, params: *const c_void) -> i32 {
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

pub(super) fn log(service: i32, msg: &str) {
    let text =
        CString::new(format!("{}: {}", plugin::NAME, msg.replace('\0', " "))).unwrap_or_default();
    // The log services take the message pointer itself as `params` (sdk.md, 2).
    invoke(service, text.as_ptr().cast());
}

pub(super) fn log_error(msg: &str) {
    log(SERVICE_LOG_ERROR, msg);
}

/// Orthanc's configuration as JSON text (service 13; we free the string).
pub(super) fn configuration() -> Result<String, String> {
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

pub(super) fn orthanc_version(ctx: *mut OrthancPluginContext) -> String {
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

pub(super) fn allocate<'a>(target: *mut MemoryBuffer64, len: u64) -> Result<&'a mut [u8], Error> {
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
pub(super) fn release(target: *mut MemoryBuffer64) {
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
