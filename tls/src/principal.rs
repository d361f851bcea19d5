//! The principal rule (docs/security.md, "Principals"): which field of a verified
//! certificate names who is calling.
//!
//! The first URI subject alternative name (e.g. `spiffe://example.org/ns/prod/sa/proxy`);
//! else the first DNS subject alternative name; else the subject's common name. IP
//! addresses in the SAN name where a server listens, not who it is, and are skipped.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The principal `cert` (DER) names, or why it names none.
pub fn of_certificate(cert: &[u8]) -> Result<String, String> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let sans = x509
        .subject_alternative_name()
        .map_err(|e| format!("the certificate's subject alternative names do not parse: {e}"))?;
    let names: Vec<&GeneralName> = sans
        .map(|ext| ext.value.general_names.iter().collect())
        .unwrap_or_default();
    let uri = names.iter().find_map(|n| match n {
        GeneralName::URI(u) if !u.is_empty() => Some(u.to_string()),
        _ => None,
    });
    let dns = || {
        names.iter().find_map(|n| match n {
            GeneralName::DNSName(d) if !d.is_empty() => Some(d.to_string()),
            _ => None,
        })
    };
    let cn = || {
        x509.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())
            .map(str::to_owned)
    };
    uri.or_else(dns).or_else(cn).ok_or_else(|| {
        "the certificate names no principal: give it a URI or DNS subject alternative name, \
         or a subject common name (docs/security.md, \"Principals\")"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cn: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }
    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }

    #[test]
    fn the_first_uri_san_wins_over_dns_names_and_the_common_name() {
        let c = cert(
            vec![
                dns("proxy-1.example"),
                uri("spiffe://example/proxy"),
                uri("spiffe://example/other"),
            ],
            Some("cn-name"),
        );
        assert_eq!(of_certificate(&c).unwrap(), "spiffe://example/proxy");
    }

    #[test]
    fn without_a_uri_the_first_dns_name_wins_over_the_common_name() {
        let c = cert(
            vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                dns("cell-a.example"),
                dns("cell-b.example"),
            ],
            Some("cn-name"),
        );
        assert_eq!(of_certificate(&c).unwrap(), "cell-a.example");
    }

    #[test]
    fn without_names_the_common_name_and_ip_addresses_are_not_principals() {
        let c = cert(
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
            Some("warren:operator"),
        );
        assert_eq!(of_certificate(&c).unwrap(), "warren:operator");
        let none = cert(vec![SanType::IpAddress("127.0.0.1".parse().unwrap())], None);
        let e = of_certificate(&none).unwrap_err();
        assert!(e.contains("names no principal"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let e = of_certificate(b"not a certificate").unwrap_err();
        assert!(e.contains("does not parse"), "{e}");
    }
}
