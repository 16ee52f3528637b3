//! Single-core seal/open throughput of the v2 format, in memory (bench/storage.sh compares
//! it with `openssl speed -evp aes-256-gcm` in the same run).
//!
//! `cargo run --release -p pacsgate-storage --no-default-features --example seal_bench [MiB]`

use std::time::Instant;

use pacsgate_storage::format::v2::{open_stream, seal_slice};
use pacsgate_storage::keys::{KeyRing, MasterKey};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let keys = KeyRing::new(MasterKey::from_bytes(1, [7; 32]).expect("key"), []);
    let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
    let mut sealed = Vec::with_capacity(len + len / 4096 + 4096);
    let mut opened = Vec::with_capacity(len);
    let (mut best_seal, mut best_open) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        sealed.clear();
        let t = Instant::now();
        seal_slice(&keys, &plain, &mut sealed).expect("seal");
        best_seal = best_seal.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        open_stream(&keys, &mut &sealed[..], &mut opened).expect("open");
        best_open = best_open.min(t.elapsed().as_secs_f64());
        assert!(opened == plain);
    }
    let mb = len as f64 / 1e6;
    println!("seal_mb_s {:.0}", mb / best_seal);
    println!("open_mb_s {:.0}", mb / best_open);
}
