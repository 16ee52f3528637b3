//! A-ASSOCIATE parsing against PDUs captured from dcmtk, pynetdicom and Orthanc
//! (tests/fixtures/pdu, see its README), plus truncation and corruption.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pdu")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn dcmtk_echoscu_rq() {
    let rq = Association::parse_rq(&fixture("dcmtk-echoscu-A-ASSOCIATE-RQ.bin")).unwrap();
    assert_eq!(rq.called_ae, "ORTHANC");
    assert_eq!(rq.calling_ae, "MODALITY1");
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(
        rq.application_context.as_deref(),
        Some("1.2.840.10008.3.1.1.1")
    );
    assert_eq!(rq.user.max_length, Some(16384));
    assert!(rq.user.implementation_class_uid.is_some());
    assert!(rq
        .contexts
        .iter()
        .all(|c| c.abstract_syntax.as_deref() == Some("1.2.840.10008.1.1")));
    assert!(rq
        .contexts
        .iter()
        .all(|c| c.id % 2 == 1 && !c.transfer_syntaxes.is_empty()));
}

#[test]
fn pynetdicom_rq_and_storescu_with_128_contexts() {
    let py = Association::parse_rq(&fixture("pynetdicom-echo-A-ASSOCIATE-RQ.bin")).unwrap();
    assert_eq!(
        (py.calling_ae.as_str(), py.user.max_length),
        ("MODALITY1", Some(16382))
    );
    let store = Association::parse_rq(&fixture("dcmtk-storescu-128pc-A-ASSOCIATE-RQ.bin")).unwrap();
    assert_eq!(store.calling_ae, "ROGUE");
    assert_eq!(store.contexts.len(), 128);
}

#[test]
fn orthanc_ac() {
    let ac = Association::parse_ac(&fixture("orthanc-A-ASSOCIATE-AC.bin")).unwrap();
    assert_eq!(ac.user.max_length, Some(16384));
    let accepted: Vec<_> = ac.accepted_contexts().collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].abstract_syntax, None);
    assert_eq!(accepted[0].transfer_syntaxes.len(), 1);
    assert!(matches!(
        Association::parse_rq(&fixture("orthanc-A-ASSOCIATE-AC.bin")),
        Err(AssociationError::WrongType { .. })
    ));
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let full = fixture("dcmtk-storescu-128pc-A-ASSOCIATE-RQ.bin");
    for len in 0..full.len() {
        let mut cut = full[..len].to_vec();
        // Keep the header's length consistent so the item walk itself meets the cut.
        if cut.len() >= 6 {
            let body = (cut.len() - 6) as u32;
            cut[2..6].copy_from_slice(&body.to_be_bytes());
        }
        let parsed = Association::parse_rq(&cut);
        if len < ITEMS_AT {
            assert!(parsed.is_err(), "prefix of {len} bytes parsed");
        }
    }
}

#[test]
fn item_lengths_that_overrun_are_refused() {
    let mut rq = fixture("dcmtk-echoscu-A-ASSOCIATE-RQ.bin");
    // First item (application context) at offset 74: claim more bytes than the PDU has.
    rq[ITEMS_AT + 2..ITEMS_AT + 4].copy_from_slice(&0xFFFFu16.to_be_bytes());
    assert!(matches!(
        Association::parse_rq(&rq),
        Err(AssociationError::ItemOverrun { item: 0x10, .. })
    ));
}

#[test]
fn ae_titles_lose_their_padding_and_show_hostile_bytes_escaped() {
    let mut rq = fixture("dcmtk-echoscu-A-ASSOCIATE-RQ.bin");
    rq[CALLING_AE_AT..CALLING_AE_AT + 16].copy_from_slice(b"CT1\0SPOOF\n      ");
    rq[CALLED_AE_AT..CALLED_AE_AT + 16].copy_from_slice(b" ORTHANC        ");
    let parsed = Association::parse_rq(&rq).unwrap();
    assert_eq!(parsed.calling_ae, "CT1\\x00SPOOF\\x0a");
    assert_eq!(parsed.called_ae, " ORTHANC");
    assert!(ae::title(parsed.calling_ae.as_bytes()).is_err());
    assert!(ae::title(parsed.called_ae.as_bytes()).is_err());
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = Association::parse_rq(&bytes);
        let _ = Association::parse_ac(&bytes);
    }
}
