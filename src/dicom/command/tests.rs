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
    let huge = [0, 0, 0x00, 0x01, 0xfe, 0xff, 0xff, 0xff];
    assert_eq!(Command::parse(&huge), Err(CommandError::Overrun(0)));
    let undefined = [0, 0, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        Command::parse(&undefined),
        Err(CommandError::OddLength(0x0100))
    );
    let other_group = [8, 0, 0x10, 0, 0, 0, 0, 0];
    assert!(matches!(
        Command::parse(&other_group),
        Err(CommandError::WrongGroup(8, 0x10))
    ));
    let bad_us = [0, 0, 0x00, 0x01, 4, 0, 0, 0, 1, 2, 3, 4];
    assert_eq!(
        Command::parse(&bad_us),
        Err(CommandError::BadLength(0x0100))
    );
    assert_eq!(Command::parse(&[]), Err(CommandError::NoCommandField));
}

/// `(element, value)` pairs as an implicit-VR command set, Command Group Length first.
fn encode(elements: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (element, value) in elements {
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&element.to_le_bytes());
        body.extend_from_slice(&(value.len() as u32).to_le_bytes());
        body.extend_from_slice(value);
    }
    let mut out = vec![0, 0, 0, 0, 4, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

const MOVE_UID: &[u8] = b"1.2.840.10008.5.1.4.1.2.1.2\0";

fn c_move(dests: &[&[u8]]) -> Vec<u8> {
    let mut elements: Vec<(u16, &[u8])> =
        vec![(0x0002, MOVE_UID), (0x0100, &[0x21, 0]), (0x0110, &[1, 0])];
    elements.extend(dests.iter().map(|d| (0x0600, *d)));
    elements.extend([(0x0700, &[0u8, 0][..]), (0x0800, &[2, 1][..])]);
    encode(&elements)
}

#[test]
fn repeated_or_unordered_tags_are_refused() {
    // The bypass: dcmtk keeps the first Command Field (C-FIND), we used to keep the last.
    let echo_uid = b"1.2.840.10008.1.1\0";
    let dup = encode(&[
        (0x0002, echo_uid),
        (0x0100, &[0x20, 0]),
        (0x0100, &[0x30, 0]),
        (0x0110, &[1, 0]),
        (0x0800, &[1, 1]),
    ]);
    assert_eq!(Command::parse(&dup), Err(CommandError::OutOfOrder(0x0100)));
    let swapped = encode(&[
        (0x0100, &[0x30, 0]),
        (0x0002, echo_uid),
        (0x0110, &[1, 0]),
        (0x0800, &[1, 1]),
    ]);
    assert_eq!(
        Command::parse(&swapped),
        Err(CommandError::OutOfOrder(0x0002))
    );
    assert_eq!(
        Command::parse(&c_move(&[b"EVIL", b"WS1 "])),
        Err(CommandError::OutOfOrder(0x0600))
    );
    let ok = Command::parse(&c_move(&[b"WS1 "])).unwrap();
    assert_eq!(ok.move_destination.as_deref(), Some("WS1"));
    assert_eq!(ok.name(), "C-MOVE");
}

#[test]
fn move_destination_uses_the_ae_grammar() {
    for bad in [
        &b"\0WS1"[..],
        b"WS1\0",
        b" WS1",
        b"W\\S1",
        b"",
        b"  ",
        b"ABCDEFGHIJKLMNOPQR",
    ] {
        assert!(
            matches!(
                Command::parse(&c_move(&[bad])),
                Err(CommandError::BadMoveDestination(_) | CommandError::OddLength(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn lengths_and_group_length_must_agree_with_the_bytes() {
    let good = command_of(ECHO_RQ).to_vec();
    assert!(Command::parse(&good).is_ok());
    // Group length one more, one less, zero.
    for said in [good.len() - 12 + 2, good.len() - 12 - 2, 0] {
        let mut cmd = good.clone();
        cmd[8..12].copy_from_slice(&(said as u32).to_le_bytes());
        assert!(
            matches!(Command::parse(&cmd), Err(CommandError::GroupLength { .. })),
            "{said}"
        );
    }
    // Trailing bytes that are not an element, and a whole trailing element (counted).
    let mut cmd = good.clone();
    cmd.extend_from_slice(&[0, 0, 0x00, 0x20]);
    assert!(Command::parse(&cmd).is_err());
    // An odd length anywhere.
    let odd = encode(&[(0x0002, b"1.2.840.10008.1.1"), (0x0100, &[0x30, 0])]);
    assert_eq!(Command::parse(&odd), Err(CommandError::OddLength(0x0002)));
    // A Command Field of two US values (dcmtk reads the first).
    let two = encode(&[(0x0100, &[0x20, 0, 0x30, 0])]);
    assert_eq!(Command::parse(&two), Err(CommandError::BadLength(0x0100)));
}

#[test]
fn sop_class_uids_use_the_uid_grammar() {
    let with = |uid: &[u8]| encode(&[(0x0002, uid), (0x0100, &[0x20, 0]), (0x0800, &[2, 0])]);
    let worklist = Command::parse(&with(b"1.2.840.10008.5.1.4.31")).unwrap();
    assert_eq!(
        worklist.sop_class.as_deref(),
        Some("1.2.840.10008.5.1.4.31")
    );
    let padded = Command::parse(&with(b"1.2.840.10008.5.1.4.31 \0")).err();
    assert_eq!(padded, Some(CommandError::BadUid(0x0002)));
    for bad in [
        &b"1.2.840.10008.5.1.4.31\0X"[..],
        b"\x001.2.840.10008.5.1.4.31\0",
        b" 1.2.840.10008.5.1.4.31 ",
        b"1.2.840.10008.5.1.4.31\\1",
        b"1.2..3",
        b".1",
        b"1.2.",
        b"",
    ] {
        assert_eq!(
            Command::parse(&with(bad)).err(),
            Some(CommandError::BadUid(0x0002)),
            "{bad:?}"
        );
    }
}

#[test]
fn n_action_is_judged_by_its_requested_sop_class() {
    // dcmtk dispatches N-ACTION on (0000,0003); an Affected SOP Class beside it is ignored.
    let cmd = encode(&[
        (0x0002, b"1.2.840.10008.1.20.1"),
        (0x0003, b"1.2.840.10008.5.1.4.1.1.2\0"),
        (0x0100, &[0x30, 0x01]),
        (0x0800, &[2, 0]),
    ]);
    let parsed = Command::parse(&cmd).unwrap();
    assert_eq!(
        parsed.sop_class.as_deref(),
        Some("1.2.840.10008.5.1.4.1.1.2")
    );
}
