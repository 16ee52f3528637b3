//! PROXY protocol header parsing (HAProxy's proxy-protocol.txt, v1 and v2) on arbitrary
//! bytes: it never asks to read past its bounds, and what it accepts parses the same from
//! exactly its own bytes (so the reader never consumes a byte of the TLS stream after it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsgate::server::proxy::{parse, Parsed, V1_MAX, V2_MAX_PAYLOAD};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Incomplete(n)) => {
            assert!(n > 0);
            assert!(data.len() + n <= (16 + V2_MAX_PAYLOAD).max(V1_MAX));
        }
        Ok(Parsed::Done(header, len)) => {
            assert!(len <= data.len());
            assert_eq!(parse(&data[..len]), Ok(Parsed::Done(header, len)));
        }
        Err(_) => {}
    }
});
