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
//!
//! - [`sdk`]: the mirrored types and service ids, and the calls into Orthanc.
//! - [`storage`]: the storage-area callbacks.
//! - here: the four exported entry points (`OrthancPluginInitialize` registers the
//!   storage area).

#![allow(non_snake_case)]

mod sdk;
mod storage;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;

use self::sdk::*;
use self::storage::{storage_create, storage_read_range, storage_read_whole, storage_remove};
use crate::plugin;

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
        let _ = plugin::stop();
        return Err(format!(
            "Orthanc refused the storage area (error {code}); is another storage plugin loaded?"
        ));
    }
    log(SERVICE_LOG_WARNING, &summary);
    Ok(())
}

#[no_mangle]
pub extern "C" fn OrthancPluginFinalize() {
    let _ = catch_unwind(|| match plugin::stop() {
        Some(stats) => log(SERVICE_LOG_WARNING, &format!("finalize; {stats}")),
        None => log(SERVICE_LOG_INFO, "finalize"),
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
