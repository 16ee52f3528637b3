//! Shared test support: processes and ports (`process`), a per-test PKI (`pki`), the
//! pacsgate binary (`gateway`), Debian's Orthanc (`orthanc`), an in-process HTTP backend
//! (`backend`), a misbehaving one for fault injection (`faulty`), DICOM clients
//! (`dicom`), a systemd notification socket (`notify`), the
//! encrypting storage plugin (`storage`) and its key services (`kms`: moto's KMS, OpenBao,
//! SoftHSM2), a systemd unit run without systemd (`unit`) and
//! `deploy/quickstart.sh` (`quickstart`), `deploy/topology.sh` (`topology`), the deploy/container/ images run from a chroot
//! (`container`), and for the oracles a seeded PRNG (`rng`),
//! generated HTTP spellings (`spelling`, sent byte for byte by `rawhttp`, judged by
//! `http_oracle`) and DIMSE
//! mutations (`mutate`); acceptors that never answer (`silent`); redis-server and a
//! garbage-answering fake of it (`redis`), replicas sharing one (`cluster`). Every integration test
//! file includes this with `mod support;` and uses what it needs.
#![allow(dead_code)]

pub mod backend;
pub mod cluster;
pub mod container;
pub mod dicom;
pub mod faulty;
pub mod gateway;
pub mod haproxy;
pub mod http_oracle;
pub mod kms;
pub mod lb;
pub mod mutate;
pub mod notify;
pub mod orthanc;
pub mod pki;
pub mod policy;
pub mod process;
pub mod quickstart;
pub mod raw;
pub mod rawhttp;
pub mod redis;
pub mod rng;
pub mod silent;
pub mod spelling;
pub mod storage;
pub mod topology;
pub mod unit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The LD_PRELOAD shim that keeps wildcard binds on loopback, built once per test binary.
pub fn bind_lo() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/bind_lo.c");
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bind_lo-{}.so", std::process::id()));
        let status = Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .status()
            .expect("gcc is needed to build tests/support/bind_lo.c");
        assert!(status.success(), "building bind_lo.so failed");
        out
    })
    .clone()
}

/// Plain HTTP/1.0 GET on 127.0.0.1 (readiness checks of plain servers): status and body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()?;
    Some((status, raw[head_end + 4..].to_vec()))
}

/// A sample DICOM file shipped with pydicom (offline).
pub fn pydicom_file(name: &str) -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import pydicom, os; print(os.path.dirname(pydicom.__file__))",
        ])
        .output()
        .expect("python3 with pydicom is needed; run tests/run.sh");
    assert!(
        out.status.success(),
        "pydicom is not installed; run tests/run.sh"
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let path = PathBuf::from(dir).join("data/test_files").join(name);
    assert!(
        path.exists(),
        "{} missing from pydicom's test files",
        path.display()
    );
    path
}
