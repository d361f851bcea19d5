//! Making a CA and certificates (rcgen), for `warren dev --tls` and the tests: every
//! certificate names its principal as a URI subject alternative name (and as its common
//! name, for people reading it), the hosts it serves as DNS or IP names, and may be used
//! both as a server and as a client (docs/security.md, "Certificates").

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::TlsFiles;

/// A certificate authority held in memory, to sign certificates with.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From a day ago for ten years.
    Current,
    /// Throughout 2020 only: expired now.
    Expired,
}

/// A generation failure (rcgen's), as text.
pub type GenError = String;

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<Self, GenError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Self { cert, key })
    }

    /// The CA's certificate, PEM (the `--cacert` file).
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `principal` (its URI SAN and CN), serving `hosts` (DNS names or
    /// IP addresses), signed by this CA.
    pub fn issue(
        &self,
        principal: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> Result<Issued, GenError> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).map_err(|e| e.to_string())?;
        params.subject_alt_names.insert(
            0,
            SanType::URI(
                principal
                    .try_into()
                    .map_err(|e: rcgen::Error| e.to_string())?,
            ),
        );
        params
            .distinguished_name
            .push(DnType::CommonName, principal);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        match validity {
            Validity::Current => {
                let now = std::time::SystemTime::now();
                params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
                params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 86_400)).into();
            }
            Validity::Expired => {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2020, 12, 31);
            }
        }
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(|e| e.to_string())?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes the CA certificate to `dir/ca.pem`.
    pub fn write_ca(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert_pem())?;
        Ok(path)
    }

    /// Issues a certificate ([`Ca::issue`]) and writes it to `dir/NAME.pem` and its key to
    /// `dir/NAME.key` (mode 0600); returns the files with `ca` as the CA file.
    pub fn write_issued(
        &self,
        dir: &Path,
        name: &str,
        principal: &str,
        hosts: &[&str],
        validity: Validity,
        ca: &Path,
    ) -> Result<TlsFiles, GenError> {
        let issued = self.issue(principal, hosts, validity)?;
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, issued.cert_pem).map_err(|e| format!("{}: {e}", cert.display()))?;
        write_private(&key, issued.key_pem.as_bytes())
            .map_err(|e| format!("{}: {e}", key.display()))?;
        Ok(TlsFiles::new(ca, cert, key))
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
