use super::*;
use crate::config::Services;
use crate::tls::{CertificateMatch, Fingerprint};

fn id(cn: &str) -> PeerIdentity {
    PeerIdentity {
        subject: format!("CN={cn}"),
        common_name: Some(cn.into()),
        sans: vec![format!("{}.test", cn.to_ascii_lowercase())],
        fingerprint: Fingerprint::of(cn.as_bytes()),
    }
}

fn modality(name: &str, aet: &str, cert: Option<CertificateMatch>, allow: Services) -> Modality {
    Modality {
        name: name.into(),
        aet: aet.into(),
        hosts: vec!["10.0.0.0/8".parse().unwrap()],
        certificate: cert,
        allow,
        move_destinations: None,
        max_associations: None,
    }
}

fn policy(always: Services) -> Policy {
    Policy::new(DicomPolicy {
        called_aet: Some("ORTHANC".into()),
        always_allow: always,
        modalities: vec![
            modality(
                "ct1",
                "CT1",
                Some(CertificateMatch::Fingerprint(Fingerprint::of(b"CT1"))),
                Services::STORE,
            ),
            modality(
                "mr1",
                "MR1",
                Some(CertificateMatch::Name("MR1".into())),
                Services::FIND,
            ),
            modality("ws", "WS", None, Services::MOVE),
        ],
        ..DicomPolicy::default()
    })
}

fn peer(identity: Option<&PeerIdentity>) -> Peer<'_> {
    Peer {
        ip: "10.1.2.3".parse().unwrap(),
        identity,
    }
}

#[test]
fn called_ae_is_checked_first() {
    let p = policy(Services::default());
    let ct = id("CT1");
    let err = p.admit("CT1", "OTHER", &peer(Some(&ct))).unwrap_err();
    assert!(matches!(err, AssociationRefusal::CalledAeUnknown(_)));
    // Not strict: case does not matter.
    assert!(p.admit("ct1", "orthanc", &peer(Some(&ct))).is_ok());
}

#[test]
fn certificates_bind_ae_titles_both_ways() {
    let p = policy(Services::default());
    let (ct, mr, other) = (id("CT1"), id("MR1"), id("ROGUE"));
    let g = p.admit("CT1", "ORTHANC", &peer(Some(&ct))).unwrap();
    assert_eq!(g.modality.as_deref(), Some("ct1"));
    // CT1 claimed with MR1's certificate, with an unrelated one, with none.
    for who in [Some(&mr), Some(&other), None] {
        let err = p.admit("CT1", "ORTHANC", &peer(who)).unwrap_err();
        assert!(
            matches!(
                err,
                AssociationRefusal::CertificateMismatch(_)
                    | AssociationRefusal::CertificateNotForAe(_)
            ),
            "{err:?}"
        );
        assert_eq!(err.rejection().reason, 3);
    }
    // MR1's certificate cannot claim WS either (a certificate owns its AE titles) ...
    assert!(p.admit("WS", "ORTHANC", &peer(Some(&mr))).is_err());
    // ... but WS names no certificate, so an unrelated one may claim it.
    assert!(p.admit("WS", "ORTHANC", &peer(Some(&other))).is_ok());
}

#[test]
fn unknown_calling_ae_gets_always_allowed_services_or_reason_3() {
    let strict = policy(Services::default());
    let err = strict.admit("NOBODY", "ORTHANC", &peer(None)).unwrap_err();
    assert_eq!(err.rejection().reason, 3);
    let lenient = policy(Services::ECHO.union(Services::STORE));
    let g = lenient.admit("NOBODY", "ORTHANC", &peer(None)).unwrap();
    assert!(g.rules.unwrap().allow.contains(Services::STORE));
}

#[test]
fn host_check_applies_when_enabled() {
    let mut p = policy(Services::default());
    p.config.check_modality_host = true;
    let mut outside = peer(None);
    outside.ip = "192.168.1.1".parse().unwrap();
    let err = p.admit("WS", "ORTHANC", &outside).unwrap_err();
    assert!(matches!(err, AssociationRefusal::HostNotAllowed(_)));
    assert!(p.admit("WS", "ORTHANC", &peer(None)).is_ok());
}

#[test]
fn no_modalities_means_no_command_policy() {
    let p = Policy::new(DicomPolicy::default());
    let g = p.admit("ANY", "ANY", &peer(None)).unwrap();
    assert!(g.rules.is_none());
}

#[test]
fn invalid_titles_are_refused_before_anything_compares_them() {
    // The bypass: `CT1\0SPOOF` without a certificate was an unknown AE (always-allowed
    // services) while Orthanc read `CT1`. As the RQ parser shows it:
    let spoof = crate::dicom::ae::shown(b"CT1\0SPOOF       ");
    let lenient = policy(Services::ECHO.union(Services::STORE));
    let err = lenient.admit(&spoof, "ORTHANC", &peer(None)).unwrap_err();
    assert!(matches!(err, AssociationRefusal::CallingAeInvalid(_)));
    assert_eq!(err.rejection().reason, 3);
    for (calling, called, reason) in [
        (" CT1", "ORTHANC", 3),
        ("C\\T1", "ORTHANC", 3),
        ("", "ORTHANC", 3),
        ("CT1", "ORTHANC\\x00", 7),
        ("CT1", " ORTHANC", 7),
    ] {
        let err = lenient.admit(calling, called, &peer(None)).unwrap_err();
        assert_eq!(err.rejection().reason, reason, "{calling:?} {called:?}");
    }
    // Also with no modalities (no command policy) and no called AE configured.
    let open = Policy::new(DicomPolicy::default());
    assert!(open.admit(&spoof, "ANY", &peer(None)).is_err());
    assert!(open.admit("ANY", "A\\x01", &peer(None)).is_err());
}
