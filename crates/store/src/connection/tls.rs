//! TLS to PostgreSQL, as libpq's `sslmode` says, through rustls.
//!
//! A database URL may carry `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert=FILE` (PEM). As in libpq:
//! `prefer` and `require` encrypt without checking who answers (with
//! `sslrootcert` given, `require` checks the chain as `verify-ca` does);
//! `verify-ca` checks the certificate chain against the root certificates;
//! `verify-full` checks the host name too. Without `sslmode` Atrium
//! connects in the clear, as it always has: most installs reach their
//! database over a Unix socket or a private network, and a silent
//! `prefer` would only hide whether TLS is in use.

use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every session of Atrium uses, and the stream it makes.
pub type Connector = MakeRustlsConnect;
pub type TlsStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// Parses a database URL, taking out what tokio-postgres does not know
/// (`sslmode=verify-*`, `sslrootcert`) and building the TLS connector for
/// it.
/// Whether the URL says a transaction-mode pooler (PgBouncer) stands
/// between Atrium and PostgreSQL: `?pooler=transaction`.
pub fn transaction_pooler(url: &str) -> anyhow::Result<bool> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    match form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "pooler")
        .map(|(_, value)| value.into_owned())
        .as_deref()
    {
        None => Ok(false),
        Some("transaction") => Ok(true),
        Some(other) => bail!("pooler={other}: the only pooler mode Atrium knows is transaction"),
    }
}

pub fn parse_url(url: &str) -> anyhow::Result<(tokio_postgres::Config, Connector)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = None;
    let mut root_cert = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root_cert = Some(value.into_owned()),
            // Atrium's own, read by `Database` (see `transaction_pooler`).
            "pooler" => {}
            _ => {
                rest.append_pair(&key, &value);
            }
        }
    }
    let rest = rest.finish();
    let plain = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{rest}")
    };
    let mut config: tokio_postgres::Config =
        plain.parse().context("the database URL is not valid")?;
    let verification = match mode.as_deref() {
        None | Some("disable") => {
            config.ssl_mode(SslMode::Disable);
            Verification::None
        }
        Some("allow" | "prefer") => {
            config.ssl_mode(SslMode::Prefer);
            Verification::None
        }
        Some("require") => {
            config.ssl_mode(SslMode::Require);
            match &root_cert {
                Some(_) => Verification::Chain,
                None => Verification::None,
            }
        }
        Some("verify-ca") => {
            config.ssl_mode(SslMode::Require);
            Verification::Chain
        }
        Some("verify-full") => {
            config.ssl_mode(SslMode::Require);
            Verification::ChainAndHost
        }
        Some(other) => bail!(
            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ),
    };
    let roots = match (&verification, root_cert) {
        (Verification::None, _) => RootCertStore::empty(),
        (_, Some(file)) => root_store(&file)?,
        (_, None) => bail!(
            "sslmode={} needs sslrootcert=FILE in the database URL (the CA's certificate, PEM)",
            mode.unwrap_or_default()
        ),
    };
    Ok((config, connector(verification, roots)?))
}

/// What the client checks of the server's certificate.
enum Verification {
    None,
    Chain,
    ChainAndHost,
}

fn root_store(file: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("reading sslrootcert {file}"))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("reading sslrootcert {file}"))?;
        roots
            .add(cert)
            .with_context(|| format!("a certificate in {file}"))?;
    }
    if roots.is_empty() {
        bail!("sslrootcert {file} holds no certificate");
    }
    Ok(roots)
}

fn connector(verification: Verification, roots: RootCertStore) -> anyhow::Result<Connector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?;
    let config = match verification {
        Verification::ChainAndHost => builder.with_root_certificates(roots).with_no_client_auth(),
        Verification::Chain => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("setting up certificate checks")?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                .with_no_client_auth()
        }
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `verify-ca`: the chain must lead to a given root; the name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, but anyone may answer (libpq's
/// meaning of those modes). The handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_other_parameters_and_refuse_unknown_modes() {
        let (config, _) =
            parse_url("postgresql://u@h:5/db?application_name=x&sslmode=require").unwrap();
        assert_eq!(config.get_application_name(), Some("x"));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        let (config, _) = parse_url("postgresql://u@h/db").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let err = parse_url("postgresql://u@h/db?sslmode=sometimes")
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslmode=sometimes"), "{err}");
        let err = parse_url("postgresql://u@h/db?sslmode=verify-full")
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslrootcert"), "{err}");
        let err = parse_url("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent")
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("/nonexistent"), "{err:#}");
    }
}
