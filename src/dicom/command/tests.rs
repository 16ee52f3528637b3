use super::*;

/// The command set inside a captured one-PDV P-DATA-TF (6-byte PDU + 6-byte PDV header).
fn command_of(pdu: &[u8]) -> &[u8] {
    &pdu[12..]
}

const STORE_RQ: &[u8] =
    include_bytes!("../../../tests/fixtures/pdu/dcmtk-C-STORE-RQ-command.P-DATA-TF.bin");
const FIND_RSP: &[u8] =
    include_bytes!("../../../tests/fixtures/pdu/gateway-C-FIND-RSP-0124.P-DATA-TF.bin");
const ECHO_RQ: &[u8] = include_bytes!("../../../tests/fixtures/pdu/dcmtk-C-ECHO-RQ.P-DATA-TF.bin");

#[test]
fn decodes_dcmtk_store_request() {
    let cmd = Command::parse(command_of(STORE_RQ)).unwrap();
    assert_eq!(cmd.field, field::C_STORE);
    assert_eq!(cmd.name(), "C-STORE");
    assert_eq!(cmd.message_id, Some(1));
    assert_eq!(cmd.sop_class.as_deref(), Some("1.2.840.10008.5.1.4.1.1.2"));
    assert!(cmd
        .sop_instance
        .as_deref()
        .unwrap()
        .starts_with("1.3.6.1.4.1.5962"));
    assert!(cmd.has_data_set() && !cmd.is_response());
}

#[test]
fn decodes_echo_without_data_set() {
    let cmd = Command::parse(command_of(ECHO_RQ)).unwrap();
    assert_eq!(cmd.field, field::C_ECHO);
    assert!(!cmd.has_data_set());
}

#[test]
fn failure_response_matches_the_reference_vector() {
    // The reference C-FIND-RSP was built with the prototype's comment; ours differs only
    // there, so compare the decoded elements and check the framing.
    let reference = Command::parse(command_of(FIND_RSP)).unwrap();
    let rq = Command {
        field: field::C_FIND,
        message_id: reference.responded_to,
        sop_class: reference.sop_class.clone(),
        data_set_type: Some(1),
        ..Command::default()
    };
    let rsp = rq.failure_response(STATUS_NOT_AUTHORIZED, "Refused by DICOM TLS gateway policy");
    assert_eq!(&rsp[..], command_of(FIND_RSP));
    let ours = Command::parse(&rsp).unwrap();
    assert_eq!(ours.field, 0x8020);
    assert_eq!(ours.status, Some(0x0124));
    assert!(!ours.has_data_set());
    // Group length counts every byte after its own element.
    let group_len = u32::from_le_bytes([rsp[8], rsp[9], rsp[10], rsp[11]]) as usize;
    assert_eq!(group_len, rsp.len() - 12);
}

#[test]
fn store_response_echoes_the_instance() {
    let rq = Command::parse(command_of(STORE_RQ)).unwrap();
    let rsp = Command::parse(&rq.failure_response(STATUS_NOT_AUTHORIZED, "no")).unwrap();
    assert_eq!(rsp.field, 0x8001);
    assert_eq!(rsp.responded_to, Some(1));
    assert_eq!(rsp.sop_instance, rq.sop_instance);
}

#[test]
fn hostile_command_sets_are_errors() {
    let good = command_of(STORE_RQ);
    for cut in 0..good.len() {
        // Every truncation either parses (cut at an element boundary) or is an error.
        let _ = Command::parse(&good[..cut]);
    }
    let huge = [0, 0, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(Command::parse(&huge), Err(CommandError::Overrun(0)));
    let other_group = [8, 0, 0x10, 0, 0, 0, 0, 0];
    assert!(matches!(
        Command::parse(&other_group),
        Err(CommandError::WrongGroup(8, 0x10))
    ));
    let bad_us = [0, 0, 0x00, 0x01, 3, 0, 0, 0, 1, 2, 3];
    assert_eq!(
        Command::parse(&bad_us),
        Err(CommandError::BadLength(0x0100))
    );
    assert_eq!(Command::parse(&[]), Err(CommandError::NoCommandField));
}
