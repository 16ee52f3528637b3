//! pacsgate: the security edge in front of a localhost PACS (Orthanc). One binary terminates
//! HTTPS and DICOM TLS and forwards to the PACS on loopback.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`run`, `check`, `cert`, ...); `main.rs` only dispatches.
//!   [`docs`] generates shell completions and man pages from it.
//! - [`notify`]: sd_notify(3) datagrams for systemd's `Type=notify` (ready, reloading,
//!   stopping).
//! - [`config`]: the floor. TOML -> validated settings types for every section (HTTP
//!   policy types in `config::http_policy`, DICOM in `config::dicom_policy`, certificate
//!   matches, path globs, the built-in deny set); every error names the key and the fix
//!   (exit 64). It imports no runtime module; runtime modules import it. The source files
//!   import each other without circles (tests/import_graph.rs).
//! - [`tls`]: certificates (load, generate self-signed, choose RSA or ECDSA per
//!   ClientHello), hot reload, client-certificate identity, outbound client configs,
//!   expiry warnings (`tls::expiry`) and ACME issuance/renewal with its HTTP-01 responder
//!   (`tls::acme`).
//! - [`privileges`]: started as root, switch to `server.user` after binding.
//! - [`server`]: what listeners share: bounded accept loop, per-address budgets for
//!   connections not yet authenticated (`server::budget`) keyed by client
//!   (`server::client_key`), the PROXY protocol from listed load balancers
//!   (`server::proxied`: who the client is; `server::proxy`: the sans-IO v1/v2 header
//!   parser), shutdown, idle tracking, and the lingering close that lets
//!   a peer still sending read our refusal (an HTTP 4xx, a DICOM RJ or A-ABORT:
//!   `server::linger`).
//! - [`sync`]: the one poison-tolerant lock helper.
//! - [`http`]: the HTTPS listener, the access policy (`http::policy`: users, the generated
//!   `admin` account when none are configured (`http::policy::admin`), rules, deny set,
//!   rate limits, lockouts; applied by `http::guard` on canonical paths from
//!   `http::canonical`, a strict grammar on which the gateway and Orthanc's HTTP server
//!   agree), the forwarder (`http::forward`: rewrite the admitted request for the PACS
//!   and send it) over `http::upstream` (pooled keep-alive connections, a clock on each
//!   phase, one typed `UpstreamError` per failed phase, mapped to 502/504 in
//!   `http::error`); a client still sending reads our 4xx through `server::linger`.
//! - [`dicom`]: one association flow (`dicom::flow`: phases and timeouts) behind the DICOM
//!   TLS listener and the outbound tunnels, PDU walking and relay, and the
//!   DICOM policy: one AE-title grammar (`ae`), strict command sets (`command`: ascending
//!   tags, no repeats, checked lengths), modality registry and certificate binding
//!   (`policy`), command rights and refusal mapping (`access`), the enforcing inspector
//!   (`enforce`), limits, audit.
//! - [`limit`]: the one keyed limiter (a bounded sharded table, GCRA rates, failed-login
//!   lockouts) behind HTTP's per-IP/user/route rates and lockouts and DICOM's association
//!   rate; pure, the caller passes the time. `limit::cluster` (`[cluster]`) applies the
//!   same arithmetic in Redis (one Lua script per decision, server clock, TTLs) so
//!   replicas share them; degraded mode when Redis fails (rates local, password logins
//!   fail closed: `http::policy::lockouts`).
//! - [`check`]: what `pacsgate check` validates and prints.
//! - [`audit`]: the one audit stream (JSON lines) for HTTP requests and DICOM associations:
//!   records go to a bounded in-memory queue (`audit::queue`) drained by one writer thread
//!   (`audit::writer`); `audit.on_full` says what a full queue or disk does.
//! - [`reload`]: SIGHUP and file-change reloads; [`reload::Reloadable`] parts switch atomically.
//! - [`app`]: prepare (everything that can fail on config) -> bind -> serve -> drain.
//! - [`telemetry`]: tracing setup.
//! - [`metrics`]: lock-free counters every listener records into; [`admin`]: the admin
//!   listener serving them (`/metrics`) and the `/healthz`, `/readyz` probes;
//!   [`healthcheck`]: `pacsgate healthcheck --url`, the client side of those probes for
//!   images without a shell (deploy/container/).
//! - [`doctor`]: `pacsgate doctor`, checks of pacsgate's and Orthanc's configuration and
//!   of the running system.
//! - [`storage`]: `pacsgate storage ...` executes the separate `pacsgate-storage` tool
//!   (`storage-cli/`, over the `storage/` crate the Orthanc plugin in `orthanc-plugin/`
//!   uses), so this binary links no object-store client.
//!
//! # Flows
//!
//! HTTPS: accept (permit; from a listed LB, its PROXY header names the client; per-address
//! budget: pending until a request is admitted) -> TLS
//! handshake (timeout; client certificate -> `PeerIdentity`, verified again on resumption
//! and on each trust change) -> hyper HTTP/1.1 or HTTP/2 (ALPN) -> `http::handle_request`
//! (hop-by-hop headers out, before we add ours) -> `http::guard::admit` (canonical path ->
//! per-IP limit -> authenticate -> deny set -> per-user limit -> CSRF -> rules ->
//! per-route limit; refusals answered here) -> X-Forwarded-* set -> pooled upstream
//! connection (connect, response-head and body-gap clocks: 502/504, or the connection
//! cut mid-body), bodies streamed both ways and counted -> one audit record.
//!
//! DICOM (`dicom::flow`, the same phases for outbound tunnels, plain in and TLS out):
//! accept (permit, PROXY header from a listed LB, per-address budget: pending until the RQ
//! is admitted) -> TLS
//! handshake -> one bounded A-ASSOCIATE-RQ under ARTIM ->
//! limits + policy (calling/called AE, certificate binding; A-ASSOCIATE-RJ on refusal) ->
//! connect the PACS (A-ASSOCIATE-RJ if it is down) -> replay the RQ's original bytes ->
//! `dicom::relay`: two pumps, each walking PDU/PDV headers with a sans-IO `Walker` that
//! validates framing and asks the `Enforcer` about PDVs and held commands (refused ones
//! are answered with status 0x0124 and their data set swallowed); data-set bytes go from
//! the read buffer to the other socket without further copies -> one audit record.

pub mod admin;
pub mod app;
pub mod audit;
pub mod check;
pub mod cli;
pub mod config;
pub mod dicom;
pub mod docs;
pub mod doctor;
pub mod healthcheck;
pub mod http;
pub mod limit;
pub mod metrics;
pub mod notify;
pub mod privileges;
pub mod reload;
pub mod server;
pub mod storage;
pub mod sync;
pub mod telemetry;
pub mod tls;
