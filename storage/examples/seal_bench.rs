//! Single-core seal/open throughput of the v3 format, in memory (bench/storage.sh compares
//! it with `openssl speed -evp aes-256-gcm` in the same run).
//!
//! `cargo run --release -p pacsgate-storage --no-default-features --example seal_bench [MiB]`
//!
//! Prints four lines: `seal_mb_s` / `open_mb_s` for one pass per segment (`seal_to_slice`,
//! as for an object-store PUT; `open_stream` from the object in memory), and
//! `seal_stream_mb_s` / `open_stream_mb_s` through a `Write` / a 64 KiB `BufReader`
//! (`seal_slice`, `open_stream`) as the backends use them, which add one memcpy per byte
//! here where a file has the kernel's copy of `write(2)`/`read(2)` instead.

use std::io::BufReader;
use std::time::Instant;

use pacsgate_storage::format::pge::{
    open_stream, seal_slice, seal_to_slice, Identity, SegmentKey, SEGMENT_LEN, TAG_LEN,
};
use pacsgate_storage::keys::{KeyRing, MasterKey};

const ROUNDS: usize = 5;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let keys = KeyRing::new(MasterKey::from_bytes(1, [7; 32]).expect("key"), []);
    let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
    let id = Identity::of("17dfc0b5-8b18-4a3c-9d2e-0123456789ab", Some(1));
    let create = || SegmentKey::create(&keys, id, len as u64).expect("data key");
    let mut sealed = vec![0u8; create().header().object_len() as usize];
    let mut opened = Vec::with_capacity(len);
    let mut streamed = Vec::with_capacity(sealed.len());

    let mut best = [f64::MAX; 4];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        seal_to_slice(&create(), &plain, &mut sealed).expect("seal");
        best[0] = best[0].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        open_stream(&keys, id, &mut &sealed[..], &mut opened).expect("open");
        best[1] = best[1].min(t.elapsed().as_secs_f64());
        assert!(opened == plain);

        streamed.clear();
        let t = Instant::now();
        seal_slice(&create(), &plain, &mut streamed).expect("seal stream");
        best[2] = best[2].min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        // A reader without its own buffer (a file, a socket) behind a BufReader.
        let reader: &mut dyn std::io::Read = &mut &streamed[..];
        let mut buffered = BufReader::with_capacity(SEGMENT_LEN + TAG_LEN, reader);
        open_stream(&keys, id, &mut buffered, &mut opened).expect("open stream");
        best[3] = best[3].min(t.elapsed().as_secs_f64());
        assert!(opened == plain);
    }
    let mb = len as f64 / 1e6;
    for (name, secs) in ["seal", "open", "seal_stream", "open_stream"]
        .iter()
        .zip(best)
    {
        println!("{name}_mb_s {:.0}", mb / secs);
    }
}
