//! Certificates for tests with real TLS (docs/security.md): a CA in a temporary directory
//! and certificates it signs for `127.0.0.1`/`localhost`, plus the bad kinds a server must
//! refuse: expired ones and ones from a CA it does not trust.

use std::path::{Path, PathBuf};

use warren_tls::gen::{Ca, Validity};
use warren_tls::TlsFiles;

/// A test CA and the directory its files live in (removed on drop).
pub struct TestCerts {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_path: PathBuf,
}

/// The hosts every test certificate serves.
const HOSTS: &[&str] = &["127.0.0.1", "localhost"];

impl TestCerts {
    /// A fresh CA, written to `ca.pem` in a new temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let ca = Ca::new("warren test CA").expect("make a CA");
        let ca_path = ca.write_ca(dir.path()).expect("write ca.pem");
        Self { dir, ca, ca_path }
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate file.
    pub fn ca(&self) -> &Path {
        &self.ca_path
    }

    /// A certificate for `principal` (its URI SAN) as `NAME.pem`/`NAME.key`, valid now.
    pub fn issue(&self, name: &str, principal: &str) -> TlsFiles {
        self.write(&self.ca, &self.ca_path, name, principal, Validity::Current)
    }

    /// A certificate this CA signed that expired in 2020.
    pub fn expired(&self, name: &str, principal: &str) -> TlsFiles {
        self.write(&self.ca, &self.ca_path, name, principal, Validity::Expired)
    }

    /// A certificate signed by another CA, which servers trusting this one refuse; its
    /// CA file is this CA's (so the client still trusts the servers).
    pub fn untrusted(&self, name: &str, principal: &str) -> TlsFiles {
        let other = Ca::new("an untrusted CA").expect("make a CA");
        self.write(&other, &self.ca_path, name, principal, Validity::Current)
    }

    /// Another CA in the same directory (for rotations: `NAME-ca.pem`).
    pub fn other_ca(&self, name: &str) -> OtherCa {
        let ca = Ca::new(name).expect("make a CA");
        let path = self.dir().join(format!("{name}-ca.pem"));
        std::fs::write(&path, ca.cert_pem()).expect("write the CA file");
        OtherCa { ca, path }
    }

    /// Issues with `ca` (a CA from [`TestCerts::other_ca`]) into this directory.
    pub fn issue_by(&self, ca: &OtherCa, name: &str, principal: &str) -> TlsFiles {
        self.write(&ca.ca, &ca.path, name, principal, Validity::Current)
    }
}

impl TestCerts {
    /// `NAME.pem`/`NAME.key` for `principal`, signed by `ca`, in this directory; the
    /// client side trusts the CA file `ca_path`.
    fn write(
        &self,
        ca: &Ca,
        ca_path: &Path,
        name: &str,
        principal: &str,
        validity: Validity,
    ) -> TlsFiles {
        ca.write_issued(self.dir(), name, principal, HOSTS, validity, ca_path)
            .unwrap_or_else(|e| panic!("issue a certificate {name} for {principal}: {e}"))
    }
}

impl Default for TestCerts {
    fn default() -> Self {
        Self::new()
    }
}

/// A second CA, for rotation tests.
pub struct OtherCa {
    ca: Ca,
    /// Its certificate file.
    pub path: PathBuf,
}

impl OtherCa {
    /// Its certificate, PEM (to append to a CA bundle).
    pub fn cert_pem(&self) -> String {
        self.ca.cert_pem()
    }
}

/// `TlsFiles`' paths as strings, for command lines: `(cacert, cert, key)`.
pub fn paths(files: &TlsFiles) -> (String, String, String) {
    let (cert, key) = files.identity.clone().expect("a certificate and key");
    let s = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    (s(&files.cacert), s(&cert), s(&key))
}
