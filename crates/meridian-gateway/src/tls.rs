//! Inbound TLS: rustls on the ring provider, HTTP/2 and HTTP/1.1 by ALPN.
//! The certificate and key are read again when either file changes, so a
//! renewed certificate is served without a restart; a broken new pair is
//! logged and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for changes.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The certificate being served, and where it came from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(TlsAcceptor, Option<SystemTime>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Reads a certificate chain and key into a server config.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    m(cert).max(m(key))
}

impl Tls {
    /// Loads the pair (blocking file reads: call at start-up).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let cfg = server_config(cert, key)?;
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((TlsAcceptor::from(Arc::new(cfg)), modified(cert, key))),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().0.clone()
    }

    /// Forever: reloads the pair when a file changed (off the runtime).
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }

    fn reload_if_changed(&self) {
        let now = modified(&self.cert, &self.key);
        if now == self.current.read().1 {
            return;
        }
        match server_config(&self.cert, &self.key) {
            Ok(cfg) => {
                *self.current.write() = (TlsAcceptor::from(Arc::new(cfg)), now);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Keep serving the old pair; try again when the files change again.
                self.current.write().1 = now;
                tracing::error!(error = %e, "the new TLS certificate or key is not usable; the old one is kept");
            }
        }
    }
}
