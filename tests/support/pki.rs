//! A throw-away PKI per test, made with rcgen: a CA, a server leaf for localhost/127.0.0.1,
//! client leaves with a given CN, and an unrelated CA for "wrong issuer" cases. RSA keys,
//! because dcmtk clients are among the users.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_RSA_SHA256,
};

pub struct Ca {
    pub name: String,
    pub cert_pem: String,
    pub path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// PEM files of one leaf.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        let path = dir.join(format!("{}.pem", slug(name)));
        std::fs::write(&path, cert.pem()).expect("write CA");
        Ca {
            name: name.to_string(),
            cert_pem: cert.pem(),
            path,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    pub fn server(&self, dir: &Path, name: &str) -> Leaf {
        self.leaf(
            dir,
            name,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject CN `cn` (and a DNS SAN `<cn>.test`).
    pub fn client(&self, dir: &Path, cn: &str) -> Leaf {
        let san = format!("{}.test", cn.to_ascii_lowercase());
        self.leaf(
            dir,
            &format!("client-{cn}-{}", slug(&self.name)),
            cn,
            &[&san],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn leaf(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        sans: &[&str],
        eku: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("leaf key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*s).try_into().expect("DNS SAN")),
            })
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let leaf = Leaf {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write leaf");
        write_private(&leaf.key, key.serialize_pem().as_bytes());
        leaf
    }
}

impl Ca {
    /// Write (or replace) this CA's PEM CRL at `path`, revoking `revoked`.
    pub fn write_crl(&self, path: &Path, revoked: &[&Leaf]) {
        use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
        let revoked_certs = revoked
            .iter()
            .map(|leaf| RevokedCertParams {
                serial_number: serial_of(&leaf.cert).into(),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: vec![revoked.len() as u8 + 1].into(),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("sign CRL");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, crl.pem().expect("CRL PEM")).expect("write CRL");
        std::fs::rename(&tmp, path).expect("replace CRL");
    }
}

/// The serial number of the first certificate in a PEM file (big-endian bytes).
fn serial_of(cert: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use x509_parser::prelude::FromDer;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).expect("read cert");
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(der.as_ref()).expect("parse cert");
    parsed.raw_serial().to_vec()
}

/// Keys are written 0600, as an operator would (pacsgate warns about readable keys).
fn write_private(path: &Path, data: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create key file");
    std::io::Write::write_all(&mut f, data).expect("write key");
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// SHA-256 fingerprint of the first certificate in a PEM file, `sha256:<hex>`.
pub fn fingerprint(cert: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).expect("read cert");
    pacsgate::tls::Fingerprint::of(der.as_ref()).to_string()
}
