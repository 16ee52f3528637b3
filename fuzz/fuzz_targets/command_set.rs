//! DIMSE command-set decoding (PS3.7 §6.3) on arbitrary bytes; whatever decodes must
//! yield a failure response that decodes again to the matching response.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacsgate::dicom::command::Command;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = Command::parse(data) {
        let rsp = cmd.failure_response(0x0124, "fuzz");
        let back = Command::parse(&rsp).expect("our own response decodes");
        assert_eq!(back.field, cmd.field | 0x8000);
        assert_eq!(back.status, Some(0x0124));
    }
});
