//! Orthanc storage-area plugin: every attachment Orthanc stores goes through
//! `pacsgate-storage` and reaches the disk or the bucket envelope-encrypted.
//!
//! # Layout
//!
//! - [`ffi`]: the only `unsafe` code. `ffi::sdk`: hand-written mirror of the few
//!   `OrthancCPlugin.h` items used (Orthanc 1.10.1 SDK; layouts asserted at compile time)
//!   and the service calls; `ffi::storage`: the storage callbacks, each wrapped in
//!   `catch_unwind`; `ffi` itself: the four exported entry points.
//! - [`plugin`]: safe code: start-up (configuration, keys, backend probe; any failure makes
//!   `OrthancPluginInitialize` fail so Orthanc exits) and the storage operations on UUIDs.
//!
//! # Flow
//!
//! Orthanc `create(uuid, bytes)` -> `Store::put("xx/yy/uuid")`; `readWhole` ->
//! `Store::read_whole` into a buffer from `CreateMemoryBuffer64`; `readRange` ->
//! `Store::read_range` into Orthanc's buffer (only covering segments are decrypted);
//! `remove` -> `Store::remove`. Errors are logged and returned as Orthanc error codes.

pub mod ffi;
pub mod plugin;
