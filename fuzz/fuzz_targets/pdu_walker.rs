//! The relay's PDU/PDV walker with the enforcing inspector, past a real A-ASSOCIATE-AC,
//! on arbitrary client bytes delivered in arbitrary pieces: never panics, never holds
//! more than its bound, and every Forward range lies inside the fed input.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use pacsgate::audit::Audit;
use pacsgate::config::Services;
use pacsgate::dicom::access::{Grant, Rules};
use pacsgate::dicom::association::Association;
use pacsgate::dicom::enforce::Enforcer;
use pacsgate::dicom::inspect::Direction;
use pacsgate::dicom::record::{Activity, Parties};
use pacsgate::dicom::session::Session;
use pacsgate::dicom::walker::{Action, Outbox, Walker};

const RQ: &[u8] = include_bytes!("../../tests/fixtures/pdu/pynetdicom-echo-A-ASSOCIATE-RQ.bin");
const AC: &[u8] = include_bytes!("../../tests/fixtures/pdu/orthanc-A-ASSOCIATE-AC.bin");

/// One audit stream (and its writer thread) for every input, not one per input.
fn audit() -> Arc<Audit> {
    static AUDIT: OnceLock<Arc<Audit>> = OnceLock::new();
    AUDIT
        .get_or_init(|| Arc::new(Audit::to_log().expect("an audit stream to the log")))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let rq = Association::parse_rq(RQ).expect("fixture");
    let grant = Grant {
        rules: Some(Rules {
            allow: Services::STORE,
            move_destinations: None,
            strict_aet: false,
        }),
        modality: Some("fuzz".into()),
    };
    let parties = Arc::new(Parties::new("fuzz", [127, 0, 0, 1].into(), None));
    let audit = audit();
    let enforcer = Enforcer::new(
        grant,
        parties,
        audit,
        Arc::new(Mutex::new(Activity::default())),
    );
    let mut session = Session::new(rq, 64 * 1024, Box::new(enforcer));
    let mut out = Outbox::default();
    let mut from_acceptor = Walker::new(Direction::FromAcceptor);
    if from_acceptor.feed(AC, &mut session, &mut out) != Ok(AC.len()) {
        panic!("fixture AC refused");
    }
    let mut walker = Walker::new(Direction::FromRequestor);
    let step = usize::from(split).max(1);
    let mut pending = Vec::new();
    for piece in data.chunks(step) {
        pending.extend_from_slice(piece);
        out.clear();
        let Ok(consumed) = walker.feed(&pending, &mut session, &mut out) else {
            return;
        };
        assert!(consumed <= pending.len());
        for action in &out.actions {
            if let Action::Forward(r) = action {
                assert!(r.end <= pending.len());
            }
        }
        pending.drain(..consumed);
        assert!(
            pending.len() < 12,
            "the walker consumes all but a partial header"
        );
    }
});
