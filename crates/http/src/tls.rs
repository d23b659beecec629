//! HTTPS served by the process itself (`serve --tls-cert --tls-key`):
//! rustls with the ring provider, HTTP/2 and HTTP/1.1 offered by ALPN, and
//! the certificate read again on SIGHUP. Each handshake asks the resolver
//! for the current certificate, so a reload changes what new connections
//! see and leaves open ones as they are.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and its private key are (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads the files as serving will: for refusing to start early.
    pub fn check(&self) -> anyhow::Result<()> {
        ReloadingCert::load(self, &rustls::crypto::ring::default_provider()).map(|_| ())
    }
}

/// The certificate new handshakes get, replaced by [`Self::reload`].
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Reads the files; an unreadable file, a key that is not the
    /// certificate's, or an empty chain is an error naming the file.
    fn load(files: &TlsFiles, provider: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .with_context(|| format!("reading certificates from {}", files.cert.display()))?;
        anyhow::ensure!(
            !chain.is_empty(),
            "{} holds no certificate",
            files.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .with_context(|| format!("reading a private key from {}", files.key.display()))?;
        let certified = CertifiedKey::from_der(chain, key, provider).with_context(|| {
            format!(
                "the key in {} does not go with the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
        Ok(Arc::new(certified))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        let fresh = Self::load(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The acceptor for `files`, and its certificate for reloading.
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<(TlsAcceptor, Arc<ReloadingCert>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificate = Arc::new(ReloadingCert {
        current: RwLock::new(ReloadingCert::load(files, &provider)?),
        files: files.clone(),
        provider: provider.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certificate))
}

/// Reads the certificate again on every SIGHUP, for as long as it runs.
pub(crate) async fn reload_on_hangup(certificate: Arc<ReloadingCert>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: certificates will not reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match certificate.reload() {
            Ok(()) => tracing::info!(
                cert = %certificate.files.cert.display(),
                "reloaded the TLS certificate"
            ),
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "reloading the TLS certificate failed; still serving the previous one"
            ),
        }
    }
}
