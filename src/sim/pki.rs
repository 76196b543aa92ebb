//! Certificates for the simulated RLP, made at start: a CA playing the
//! Loggregator CA, the RLP's server certificate for `reverselogproxy` (and
//! loopback), and a client certificate for the exporter, as the platform
//! issues them.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::source::rlp::DEFAULT_SERVER_NAME;
use crate::source::tls::MutualTlsFiles;

/// A CA and the certificates it signed, as PEM.
pub struct SimPki {
    /// The CA's certificate.
    pub ca: String,
    /// The server's certificate and key.
    pub server: (String, String),
    /// The client's certificate and key.
    pub client: (String, String),
}

impl std::fmt::Debug for SimPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPki").finish_non_exhaustive()
    }
}

impl SimPki {
    /// A new CA named `name`, a server certificate for `reverselogproxy`,
    /// `localhost` and 127.0.0.1, and a client certificate.
    pub fn generate(name: &str) -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let issue = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(names.clone())?;
            params.extended_key_usages = vec![usage];
            params
                .distinguished_name
                .push(DnType::CommonName, names[0].as_str());
            let cert = params.signed_by(&key, &ca)?;
            Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
        };
        let server = issue(
            vec![
                DEFAULT_SERVER_NAME.into(),
                "localhost".into(),
                "127.0.0.1".into(),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let client = issue(
            vec!["firehose-exporter".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca: ca.pem(),
            server,
            client,
        })
    }

    /// A server config presenting the server certificate, offering HTTP/2,
    /// and requiring a client certificate signed by this CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let pem_error = |e: rustls::pki_types::pem::Error| rustls::Error::General(e.to_string());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server.0.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(pem_error)?;
        let key = PrivateKeyDer::from_pem_slice(self.server.1.as_bytes()).map_err(pem_error)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca.as_bytes()).map_err(pem_error)?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// Writes the CA and the client's certificate and key into `dir` as
    /// `ca.pem`, `client.pem` and `client.key`, for the exporter.
    pub fn write_client_files(&self, dir: &Path) -> std::io::Result<MutualTlsFiles> {
        std::fs::create_dir_all(dir)?;
        let files = MutualTlsFiles {
            ca: Some(dir.join("ca.pem")),
            cert: dir.join("client.pem"),
            key: dir.join("client.key"),
        };
        std::fs::write(dir.join("ca.pem"), &self.ca)?;
        std::fs::write(&files.cert, &self.client.0)?;
        write_private(&files.key, &self.client.1)?;
        Ok(files)
    }
}

/// Writes a key readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}
