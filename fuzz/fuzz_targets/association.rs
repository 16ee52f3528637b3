//! A-ASSOCIATE-RQ/-AC parsing (PS3.8 §9.3.2-9.3.3) on arbitrary bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsgate::dicom::association::Association;

fuzz_target!(|data: &[u8]| {
    let _ = Association::parse_rq(data);
    let _ = Association::parse_ac(data);
});
