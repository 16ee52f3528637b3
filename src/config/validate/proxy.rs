//! `http.proxy_protocol` and `dicom.proxy_protocol`: the load balancers whose PROXY header
//! is believed. Whoever is listed can claim any client address, so a list that covers
//! every address is refused: it would let anyone spoof `sources` and modality hosts.

use ipnet::IpNet;

use super::super::error::ConfigError;
use super::super::values::cidr;

pub(super) fn proxy_protocol(section: &str, raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let key = format!("{section}.proxy_protocol");
    let mut nets = Vec::with_capacity(raw.len());
    for value in raw {
        let net = cidr(&key, value)?;
        if net.prefix_len() == 0 {
            return Err(ConfigError::new(
                &key,
                format!("{value:?} trusts every address: anyone could claim any client address"),
                "list only your load balancers' addresses, e.g. \"10.0.0.5/32\"",
            ));
        }
        nets.push(net.trunc());
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_are_kept_and_catch_alls_refused() {
        let nets = proxy_protocol("http", &["10.0.0.5".into(), "fd00::/64".into()]).unwrap();
        assert_eq!(nets.len(), 2);
        assert!(proxy_protocol("http", &[]).unwrap().is_empty());
        for bad in ["0.0.0.0/0", "::/0", "10.0.0.1/0"] {
            let e = proxy_protocol("dicom", &[bad.into()]).unwrap_err();
            assert_eq!(e.key, "dicom.proxy_protocol", "{bad}");
        }
        let e = proxy_protocol("http", &["lb.example".into()]).unwrap_err();
        assert_eq!(e.key, "http.proxy_protocol");
    }
}
