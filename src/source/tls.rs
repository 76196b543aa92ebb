//! TLS client settings: for the websocket and the gateway, the system's
//! roots, or no verification at all when the operator asks for it; for the
//! RLP, mutual TLS with the platform's CA and a client certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::config::ConfigError;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The certificates of a PEM file given by `flag`: at least one, or an
/// error naming the flag, the path and the cause.
pub fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let fail = |cause: &dyn std::fmt::Display| {
        ConfigError::new(flag, format!("{}: {cause}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&e))?;
    if certs.is_empty() {
        return Err(fail(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// A client config with the system roots and `extra` ones, or accepting
/// any certificate.
pub fn client_config(
    skip_verify: bool,
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "could not load a system root certificate");
        }
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        let (extra_added, _ignored) = roots.add_parsable_certificates(extra.iter().cloned());
        if added + extra_added == 0 {
            tracing::warn!(
                "no system root certificates found: TLS connections will fail to verify"
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The files of a client certificate and of the CA that signed the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutualTlsFiles {
    /// CA certificates (PEM) the server's certificate must chain to;
    /// `None` with `--skip-ssl-verify` only.
    pub ca: Option<std::path::PathBuf>,
    /// The client certificate (PEM), with its chain.
    pub cert: std::path::PathBuf,
    /// The client certificate's key (PEM).
    pub key: std::path::PathBuf,
}

/// A client config that presents the certificate of `files` and trusts only
/// their CA (or anything, with `skip_verify`), offering HTTP/2. Each file
/// that cannot be used fails with the flag, the path and the cause.
pub fn mutual_tls_config(
    files: &MutualTlsFiles,
    skip_verify: bool,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let fail = |flag: &'static str, path: &Path, cause: &dyn std::fmt::Display| {
        ConfigError::new(flag, format!("{}: {cause}", path.display()))
    };
    let chain = read_certificates("--logging.tls.cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| fail("--logging.tls.key", &files.key, &e))?;
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("--logging.tls.cert", e.to_string()))?;
    let builder = match (&files.ca, skip_verify) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider))),
        (Some(ca), false) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates("--logging.tls.ca", ca)? {
                roots
                    .add(cert)
                    .map_err(|e| fail("--logging.tls.ca", ca, &e))?;
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => {
            return Err(ConfigError::new(
                "--logging.tls.ca",
                "required with client certificates (the CA that signed the RLP's certificate), \
                 or FIREHOSE_EXPORTER_LOGGING_TLS_CA",
            ));
        }
    };
    let mut config = builder.with_client_auth_cert(chain, key).map_err(|e| {
        fail(
            "--logging.tls.key",
            &files.key,
            &format!("cannot be used with {}: {e}", files.cert.display()),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// `--skip-ssl-verify`: signatures are still checked, the chain is not.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
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
