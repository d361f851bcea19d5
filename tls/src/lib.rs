//! Warren's mutual TLS (docs/security.md): the certificate files of a process
//! ([`TlsFiles`]), loaded and checked into a [`Tls`] that can be reloaded without a restart,
//! the server side ([`server::incoming`]: verified connections with the principal their
//! client certificate names), the client side ([`client::connect`]) and the principal rule
//! ([`principal::of_certificate`]).
//!
//! One [`Tls`] holds both directions of a process's identity: the certificate it presents
//! as a server and as a client (cells and proxies dial other servers with the same
//! certificate they serve with), and the CA it trusts for both. A reload swaps the whole
//! rustls configuration; a connection keeps the one it was made with, so existing
//! connections and the sessions on them continue while new connections get the new
//! certificate and CA.

pub mod client;
#[cfg(feature = "gen")]
pub mod gen;
pub mod principal;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use principal::of_certificate as principal_of_certificate;
pub use server::PeerConn;

/// The three PEM files of a process's TLS identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) this process trusts: peers' certificates must chain to one.
    pub cacert: PathBuf,
    /// This process's certificate chain, its own certificate first, and its private key.
    /// Required to serve; a client without them presents no certificate (and a Warren
    /// server refuses it, which is how a client learns it needs one).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The CA file, certificate and key.
    pub fn new(
        cacert: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cacert: cacert.into(),
            identity: Some((cert.into(), key.into())),
        }
    }

    /// Only a CA: a client that verifies servers and presents no certificate.
    pub fn ca_only(cacert: impl Into<PathBuf>) -> Self {
        Self {
            cacert: cacert.into(),
            identity: None,
        }
    }

    /// The command-line flags every `warren` command takes for these files: `--cacert FILE`,
    /// then `--cert FILE --key FILE` when there is an identity (what a parent passes to the
    /// `warren` processes it starts).
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec!["--cacert".to_string(), self.cacert.display().to_string()];
        if let Some((cert, key)) = &self.identity {
            v.extend([
                "--cert".to_string(),
                cert.display().to_string(),
                "--key".to_string(),
                key.display().to_string(),
            ]);
        }
        v
    }

    /// From the three settings as given (`--cacert`, `--cert`, `--key`): none is
    /// plaintext (`Ok(None)`); a certificate needs its key and both need a CA. The error
    /// names the missing setting.
    pub fn from_settings(
        cacert: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, String> {
        match (cacert, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), None, None) => Ok(Some(Self::ca_only(ca))),
            (Some(ca), Some(c), Some(k)) => Ok(Some(Self::new(ca, c, k))),
            (None, _, _) => Err("a certificate is given without cacert: give the CA file that signs the peers' certificates (--cacert, WARREN_CACERT, or cacert in [tls])".into()),
            (_, Some(_), None) => Err("cert is given without key: give the certificate's private key (--key, WARREN_KEY, or key in [tls])".into()),
            (_, None, Some(_)) => Err("key is given without cert: give the certificate (--cert, WARREN_CERT, or cert in [tls])".into()),
        }
    }
}

/// A TLS file that cannot be used, and why; the message names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {}: {problem}", file.display())]
pub struct TlsError {
    /// The file at fault.
    pub file: PathBuf,
    /// What is wrong with it, and the fix where there is one.
    pub problem: String,
}

impl TlsError {
    fn new(file: &Path, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The rustls configurations built from one reading of the files.
struct Loaded {
    /// None without a certificate (a client-only identity).
    server: Option<Arc<rustls::ServerConfig>>,
    client: Arc<rustls::ClientConfig>,
    /// The principal this process's own certificate names (none without one).
    principal: Option<String>,
}

/// A process's TLS identity, reloadable: [`Tls::reload`] re-reads the files and, if they
/// are good, makes them the configuration of every connection made from then on.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// The files' modification times and lengths when last read, to notice a change.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("principal", &self.principal())
            .finish()
    }
}

/// How long a TLS handshake may take before the connection is dropped (a client that
/// opens a connection and sends nothing must not hold a task forever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Tls::watch`] looks at the files' modification times.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

impl Tls {
    /// Reads and checks the files: the CA parses, the certificate parses and names a
    /// principal ([`principal::of_certificate`]), and the key is the certificate's.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamps = stamps(&files);
        let loaded = build(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(loaded)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The files this identity is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration for accepting a connection now; `None` if this identity has no
    /// certificate (then it cannot serve: [`Tls::can_serve`]).
    pub fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.loaded().server.clone()
    }

    /// Whether this identity has a certificate to serve with; the error says what to give.
    pub fn can_serve(&self) -> Result<(), TlsError> {
        match self.files.identity {
            Some(_) => Ok(()),
            None => Err(TlsError::new(
                &self.files.cacert,
                "a server needs its own certificate and key besides the CA: give --cert and --key \
                 (WARREN_CERT/WARREN_KEY, or cert and key in [tls])",
            )),
        }
    }

    /// The configuration for dialling a server now.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.loaded().client.clone()
    }

    /// The principal this process's own certificate names, if it has one.
    pub fn principal(&self) -> Option<String> {
        self.loaded().principal.clone()
    }

    /// Re-reads the files. Good: they are the configuration of new connections from now
    /// on. Bad (garbage, a key that is not the certificate's, a file half written): the
    /// error names the file and the configuration in force stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps(&self.files);
        let loaded = build(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Whether a file changed (modification time or length) since it was last read.
    fn changed(&self) -> bool {
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != stamps(&self.files)
    }

    /// Reloads on SIGHUP and when a file changes (polled every [`POLL_EVERY`]), logging
    /// the outcome; runs until the returned task is aborted. A failed reload is logged as
    /// an error naming the file and the old configuration stays; the next change (or
    /// SIGHUP) tries again.
    pub fn watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = Arc::clone(self);
        // Registered before returning: a SIGHUP from then on reloads (and no longer ends
        // the process, SIGHUP's default).
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            let mut poll = tokio::time::interval(POLL_EVERY);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let why = tokio::select! {
                    _ = async {
                        match hup.as_mut() {
                            Some(h) => { h.recv().await; }
                            None => std::future::pending::<()>().await,
                        }
                    } => "SIGHUP",
                    _ = poll.tick() => {
                        if !tls.changed() {
                            continue;
                        }
                        "a file changed"
                    }
                };
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cacert = %tls.files.cacert.display(),
                        principal = %tls.principal().unwrap_or_default(),
                        "TLS certificates reloaded ({why}); new connections use them"
                    ),
                    Err(e) => tracing::error!(
                        "TLS certificates not reloaded ({why}), the previous ones stay in force: {e}"
                    ),
                }
            }
        })
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    let mut paths = vec![&files.cacert];
    if let Some((cert, key)) = &files.identity {
        paths.extend([cert, key]);
    }
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(path, format!("cannot be read: {e}")))
}

/// The certificates in the PEM file at `path`, each checked to parse as X.509.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, format!("is not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            path,
            "holds no certificate (expected PEM blocks \"-----BEGIN CERTIFICATE-----\")",
        ));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c).map_err(|e| {
            TlsError::new(
                path,
                format!("holds a certificate that does not parse: {e}"),
            )
        })?;
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        TlsError::new(
            path,
            format!("holds no usable private key (expected a PEM \"PRIVATE KEY\" block): {e}"),
        )
    })
}

/// The ring provider: it builds with a C compiler alone (aws-lc-rs, rustls's default,
/// needs cmake and NASM, which CI machines lack). rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange; moving to aws-lc-rs is a build dependency change, not a
/// code change (docs/security.md, "Not done yet").
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files and builds both configurations.
fn build(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let provider = provider();
    let cas = read_certs(&files.cacert)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| {
            TlsError::new(
                &files.cacert,
                format!("is not a usable CA certificate: {e}"),
            )
        })?;
    }
    let roots = Arc::new(roots);
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(&files.cacert, e.to_string()))?
        .with_root_certificates(roots.clone());
    let Some((cert, key)) = &files.identity else {
        let mut client = client.with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        return Ok(Loaded {
            server: None,
            client: Arc::new(client),
            principal: None,
        });
    };
    let chain = read_certs(cert)?;
    let principal =
        principal::of_certificate(&chain[0]).map_err(|problem| TlsError::new(cert, problem))?;
    let key_der = read_key(key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| TlsError::new(key, format!("is not a usable private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing_key)
        .keys_match()
        .map_err(|e| {
            TlsError::new(
                key,
                format!(
                    "is not the key of the certificate in {} ({e}); give the pair that belongs together",
                    cert.display()
                ),
            )
        })?;
    let general = |e: rustls::Error| TlsError::new(cert, e.to_string());

    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::new(&files.cacert, format!("cannot verify clients: {e}")))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(general)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key_der.clone_key())
        .map_err(general)?;
    server.alpn_protocols = vec![b"h2".to_vec()];

    let mut client = client
        .with_client_auth_cert(chain, key_der)
        .map_err(general)?;
    client.alpn_protocols = vec![b"h2".to_vec()];

    Ok(Loaded {
        server: Some(Arc::new(server)),
        client: Arc::new(client),
        principal: Some(principal),
    })
}

/// The identity this process dials and serves with when none is given explicitly (set
/// once at start by `warren cell`, `proxy`, `ctl`, `loadtest` and `dev`; docs/security.md).
static PROCESS: RwLock<Option<Arc<Tls>>> = RwLock::new(None);

/// Makes `tls` the process's identity: every server started and every connection dialled
/// from now on without an explicit configuration uses it.
pub fn install(tls: Arc<Tls>) {
    *PROCESS.write().unwrap_or_else(|e| e.into_inner()) = Some(tls);
}

/// The process's identity, if [`install`]ed: `None` means plaintext.
pub fn installed() -> Option<Arc<Tls>> {
    PROCESS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

    struct TestCa {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca() -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        TestCa {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// Writes `ca.pem`, `NAME.pem` and `NAME.key` (a certificate for `principal`) to `dir`.
    fn write(dir: &Path, ca: &TestCa, name: &str, principal: &str) -> TlsFiles {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.subject_alt_names
            .insert(0, SanType::URI(principal.try_into().unwrap()));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let files = TlsFiles::new(
            dir.join("ca.pem"),
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&files.cacert, ca.cert.pem()).unwrap();
        let (c, k) = files.identity.clone().unwrap();
        std::fs::write(c, cert.pem()).unwrap();
        std::fs::write(k, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn good_files_load_with_the_principal_of_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::load(write(dir.path(), &ca(), "a", "warren:a")).unwrap();
        assert_eq!(tls.principal().as_deref(), Some("warren:a"));
        assert!(tls.server_config().is_some());
        assert!(tls.can_serve().is_ok());
    }

    #[test]
    fn bad_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let files = write(dir.path(), &ca, "a", "warren:a");
        let (cert, key) = files.identity.clone().unwrap();

        std::fs::write(&cert, "garbage").unwrap();
        let e = Tls::load(files.clone()).unwrap_err();
        assert_eq!(e.file, cert);
        assert!(e.to_string().contains("holds no certificate"), "{e}");

        // A key that is not the certificate's: another pair's.
        let other = write(dir.path(), &ca, "b", "warren:b");
        let files = write(dir.path(), &ca, "a", "warren:a");
        std::fs::copy(other.identity.unwrap().1, &key).unwrap();
        let e = Tls::load(files.clone()).unwrap_err();
        assert_eq!(e.file, key);
        assert!(
            e.to_string().contains("is not the key of the certificate"),
            "{e}"
        );

        std::fs::remove_file(&files.cacert).unwrap();
        let e = Tls::load(files.clone()).unwrap_err();
        assert_eq!(e.file, files.cacert);
        assert!(e.to_string().contains("cannot be read"), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_configuration_in_force_and_a_good_one_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let files = write(dir.path(), &ca, "a", "warren:a");
        let tls = Tls::load(files.clone()).unwrap();
        let before = tls.server_config().unwrap();
        assert!(!tls.changed());

        let (_, key) = files.identity.clone().unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(tls.changed(), "a rewritten key is noticed");
        let e = tls.reload().unwrap_err();
        assert_eq!(e.file, key);
        assert!(
            Arc::ptr_eq(&before, &tls.server_config().unwrap()),
            "the old configuration stays"
        );
        assert_eq!(tls.principal().as_deref(), Some("warren:a"));
        assert!(
            !tls.changed(),
            "a failed reload is not retried until the files change again"
        );

        // The new pair, for another principal, written over the same paths.
        let next = write(dir.path(), &ca, "a", "warren:a-next");
        assert_eq!(next, files);
        tls.reload().unwrap();
        assert_eq!(tls.principal().as_deref(), Some("warren:a-next"));
        assert!(!Arc::ptr_eq(&before, &tls.server_config().unwrap()));
    }

    #[tokio::test]
    async fn sighup_reloads_even_unchanged_files() {
        let dir = tempfile::tempdir().unwrap();
        let tls = Tls::load(write(dir.path(), &ca(), "a", "warren:a")).unwrap();
        let before = tls.server_config().unwrap();
        let watcher = tls.watch();
        // The files do not change, so only the signal can make a new configuration.
        let kill = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::ptr_eq(&before, &tls.server_config().unwrap()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "SIGHUP did not reload"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(tls.principal().as_deref(), Some("warren:a"));
        watcher.abort();
    }

    #[test]
    fn a_ca_alone_makes_a_client_that_cannot_serve() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), &ca(), "a", "warren:a");
        let tls = Tls::load(TlsFiles::ca_only(&files.cacert)).unwrap();
        assert_eq!(tls.principal(), None);
        assert!(tls.server_config().is_none());
        let e = tls.can_serve().unwrap_err();
        assert!(e.to_string().contains("--cert and --key"), "{e}");
    }

    #[test]
    fn flags_name_the_files_a_warren_command_takes() {
        assert_eq!(
            TlsFiles::new("/t/ca.pem", "/t/c.pem", "/t/c.key").flags(),
            [
                "--cacert",
                "/t/ca.pem",
                "--cert",
                "/t/c.pem",
                "--key",
                "/t/c.key"
            ]
        );
        assert_eq!(
            TlsFiles::ca_only("/t/ca.pem").flags(),
            ["--cacert", "/t/ca.pem"]
        );
    }

    #[test]
    fn settings_come_in_threes() {
        assert_eq!(TlsFiles::from_settings(None, None, None), Ok(None));
        let e = TlsFiles::from_settings(None, Some("c".into()), Some("k".into())).unwrap_err();
        assert!(e.contains("--cacert"), "{e}");
        let e = TlsFiles::from_settings(Some("ca".into()), Some("c".into()), None).unwrap_err();
        assert!(e.contains("--key"), "{e}");
        assert_eq!(
            TlsFiles::from_settings(Some("ca".into()), None, None),
            Ok(Some(TlsFiles::ca_only("ca")))
        );
    }

    #[test]
    fn refusals_are_explained() {
        let m = client::explain("received fatal alert: UnknownCA");
        assert!(m.contains("not signed by a CA the server trusts"), "{m}");
        let m = client::explain("invalid peer certificate: UnknownIssuer");
        assert!(m.contains("not signed by a CA this client trusts"), "{m}");
        let m = client::explain("something new");
        assert_eq!(m, "TLS: something new");
    }
}
