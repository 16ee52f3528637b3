//! pacsgate: the security edge in front of a localhost PACS (Orthanc). One binary terminates
//! HTTPS and DICOM TLS and forwards to the PACS on loopback.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `check`, `cert`, ...); `main.rs` only dispatches.
//! - [`config`]: TOML -> validated types; every error names the key and the fix (exit 64).
//! - [`tls`]: certificates (load, generate self-signed, choose RSA or ECDSA per
//!   ClientHello), hot reload, client-certificate identity, outbound client configs.
//! - [`privileges`]: started as root, switch to `server.user` after binding.
//! - [`server`]: what listeners share: bounded accept loop, shutdown, idle tracking.
//! - [`http`]: the HTTPS listener and the streaming reverse proxy.
//! - [`dicom`]: the DICOM TLS listener, outbound tunnels, PDU walking and relay.
//! - [`check`]: what `pacsgate check` validates and prints.
//! - [`audit`]: the one audit stream (JSON lines) for HTTP requests and DICOM associations.
//! - [`reload`]: SIGHUP and file-change reloads; [`reload::Reloadable`] parts switch atomically.
//! - [`app`]: prepare (everything that can fail on config) -> bind -> serve -> drain.
//! - [`telemetry`]: tracing setup.
//! - [`storage`]: `pacsgate storage ...`, the CLI over the `pacsgate-storage` crate (the
//!   encrypting storage the Orthanc plugin in `orthanc-plugin/` uses).
//!
//! # Flows
//!
//! HTTPS: accept (permit) -> TLS handshake (timeout; client certificate -> `PeerIdentity`)
//! -> hyper HTTP/1.1 or HTTP/2 (ALPN) -> `http::handle_request` -> hop-by-hop headers out,
//! X-Forwarded-* set -> pooled upstream connection, bodies streamed both ways.
//!
//! DICOM: accept (permit) -> TLS handshake -> one bounded A-ASSOCIATE-RQ under ARTIM ->
//! (policy) -> connect the PACS (A-ASSOCIATE-RJ if it is down) -> replay the RQ's original
//! bytes -> `dicom::relay`: two pumps, each walking PDU/PDV headers with a sans-IO
//! `Walker` that validates framing and asks the `Inspector` about PDVs and commands;
//! data-set bytes go from the read buffer to the other socket without further copies.

pub mod app;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod dicom;
pub mod http;
pub mod privileges;
pub mod reload;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod tls;
