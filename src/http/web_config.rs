//! Securing the HTTP endpoint: TLS and basic authentication, from a web
//! configuration file in the format of the Prometheus exporter-toolkit
//! (`--web.config.file`) or from the Go exporter's simpler flags
//! (`--web.tls.*`, `--web.auth.*`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::http::basic_auth::{BasicAuth, Credential};
use crate::secret::Secret;

/// How the HTTP endpoint is secured. The default is plain HTTP, no auth.
#[derive(Debug, Clone, Default)]
pub struct WebSecurity {
    /// TLS settings, when serving HTTPS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users allowed in, when basic authentication is on.
    pub auth: Option<Arc<BasicAuth>>,
}

/// The web configuration file, as the exporter-toolkit defines it. Fields
/// this exporter does not implement are refused rather than ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// The flags that secure the endpoint.
#[derive(Debug, Clone, Default)]
pub struct WebSecurityArgs {
    /// `--web.config.file`.
    pub config_file: Option<PathBuf>,
    /// `--web.tls.cert_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// `--web.tls.key_file`.
    pub tls_key_file: Option<PathBuf>,
    /// `--web.auth.username`.
    pub auth_username: Option<String>,
    /// `--web.auth.password`.
    pub auth_password: Option<Secret>,
}

impl WebSecurityArgs {
    /// Reads the files and checks the settings.
    pub fn resolve(&self) -> Result<WebSecurity, ConfigError> {
        let simple = self.tls_cert_file.is_some()
            || self.tls_key_file.is_some()
            || self.auth_username.is_some()
            || self.auth_password.is_some();
        if let Some(path) = &self.config_file {
            if simple {
                return Err(ConfigError::new(
                    "--web.config.file",
                    "cannot be combined with --web.tls.* or --web.auth.*",
                ));
            }
            return from_file(path);
        }
        let tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(server_config(
                cert,
                key,
                None,
                None,
                (None, None),
                "--web.tls.cert_file",
            )?),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "--web.tls.key_file",
                    "required with --web.tls.cert_file",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "--web.tls.cert_file",
                    "required with --web.tls.key_file",
                ));
            }
        };
        let auth = match (&self.auth_username, &self.auth_password) {
            (None, None) => None,
            (Some(user), Some(password)) if !user.is_empty() => {
                let users = [(user.clone(), Credential::Plain(password.clone()))];
                Some(Arc::new(BasicAuth::new(users)))
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "--web.auth.password",
                    "required with --web.auth.username",
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    "--web.auth.username",
                    "required (and not empty) with --web.auth.password",
                ));
            }
        };
        Ok(WebSecurity { tls, auth })
    }
}

fn from_file(path: &Path) -> Result<WebSecurity, ConfigError> {
    let flag = "--web.config.file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(flag, format!("{}: {e}", path.display())))?;
    let file: WebConfigFile = serde_saphyr::from_str(&text).map_err(|e| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("invalid YAML").to_owned();
        ConfigError::new(flag, format!("{}: {first}", path.display()))
    })?;
    // Paths in the file are relative to the file, as in the exporter-toolkit.
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match &file.tls_server_config {
        None => None,
        Some(t) => Some(server_config(
            &base.join(&t.cert_file),
            &base.join(&t.key_file),
            t.client_auth_type.as_deref(),
            t.client_ca_file.as_ref().map(|p| base.join(p)).as_deref(),
            (t.min_version.as_deref(), t.max_version.as_deref()),
            flag,
        )?),
    };
    let auth = if file.basic_auth_users.is_empty() {
        None
    } else {
        let mut users = Vec::new();
        for (user, hash) in &file.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(ConfigError::new(
                    flag,
                    format!("basic_auth_users: the password of {user:?} is not a bcrypt hash"),
                ));
            }
            users.push((user.clone(), Credential::Bcrypt(hash.clone())));
        }
        Some(Arc::new(BasicAuth::new(users)))
    };
    Ok(WebSecurity { tls, auth })
}

fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_auth_type: Option<&str>,
    client_ca_file: Option<&Path>,
    versions: (Option<&str>, Option<&str>),
    flag: &'static str,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let fail = |what: &Path, e: &dyn std::fmt::Display| {
        ConfigError::new(flag, format!("{}: {e}", what.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| fail(cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert_file, &e))?;
    if certs.is_empty() {
        return Err(fail(cert_file, &"no certificate in the file"));
    }
    warn_if_expiring(cert_file, &certs[0], std::time::SystemTime::now());
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| fail(key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(versions, flag)?)
        .map_err(|e| ConfigError::new(flag, e.to_string()))?;
    let roots = |ca: Option<&Path>| -> Result<rustls::RootCertStore, ConfigError> {
        let ca = ca.ok_or_else(|| {
            ConfigError::new(
                flag,
                "client_ca_file is required to verify client certificates",
            )
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| fail(ca, &e))? {
            roots
                .add(cert.map_err(|e| fail(ca, &e))?)
                .map_err(|e| fail(ca, &e))?;
        }
        Ok(roots)
    };
    let verifier = match client_auth_type.unwrap_or("NoClientCert") {
        "NoClientCert" => None,
        kind @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven") => {
            let builder = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(client_ca_file)?),
                provider,
            );
            let builder = if kind == "VerifyClientCertIfGiven" {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            Some(
                builder
                    .build()
                    .map_err(|e| ConfigError::new(flag, e.to_string()))?,
            )
        }
        other => {
            return Err(ConfigError::new(
                flag,
                format!(
                    "client_auth_type {other:?} is not one of NoClientCert, \
                     VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ),
            ));
        }
    };
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::new(flag, format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Certificates expiring within this many days get a warning at start.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Logs a warning when the serving certificate is expired, not yet valid or
/// about to expire, and returns what it said: clients will refuse it.
fn warn_if_expiring(
    path: &Path,
    cert: &CertificateDer<'_>,
    now: std::time::SystemTime,
) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let now = i64::try_from(now.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()?;
    let validity = parsed.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let when = |t: i64| {
        u64::try_from(t)
            .map(|t| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                )
                .to_string()
            })
            .unwrap_or_else(|_| t.to_string())
    };
    let (problem, consequence) = if now > not_after {
        (
            format!("expired on {}", when(not_after)),
            "scrapers will refuse it",
        )
    } else if now < not_before {
        (
            format!("not valid before {}", when(not_before)),
            "scrapers will refuse it until then",
        )
    } else if not_after - now < EXPIRY_WARNING_DAYS * 86400 {
        (
            format!(
                "expires on {}, in {} days",
                when(not_after),
                (not_after - now) / 86400
            ),
            "renew it before scrapers refuse it",
        )
    } else {
        return None;
    };
    tracing::warn!(
        certificate = %path.display(),
        "the HTTPS certificate {problem}: {consequence}"
    );
    Some(problem)
}

fn protocol_versions(
    (min, max): (Option<&str>, Option<&str>),
    flag: &'static str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ConfigError> {
    let rank = |v: Option<&str>, default: u8| match v {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(ConfigError::new(
            flag,
            format!("TLS version {other:?} is not one of TLS12, TLS13"),
        )),
    };
    let (min, max) = (rank(min, 12)?, rank(max, 13)?);
    let versions: Vec<_> = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, version)| version)
        .collect();
    if versions.is_empty() {
        return Err(ConfigError::new(flag, "min_version is above max_version"));
    }
    Ok(versions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cf-firehose-exporter-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn from(args: WebSecurityArgs) -> Result<WebSecurity, String> {
        args.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_set_is_plain_http_without_auth() {
        let web = from(WebSecurityArgs::default()).unwrap();
        assert!(web.tls.is_none() && web.auth.is_none());
    }

    #[test]
    fn half_pairs_of_flags_name_the_missing_one() {
        let err = from(WebSecurityArgs {
            auth_username: Some("u".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(
            err,
            "--web.auth.password: required with --web.auth.username"
        );
        let err = from(WebSecurityArgs {
            tls_cert_file: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err, "--web.tls.key_file: required with --web.tls.cert_file");
        let err = from(WebSecurityArgs {
            config_file: Some("w.yml".into()),
            auth_username: Some("u".into()),
            auth_password: Some(Secret::new("p")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.starts_with("--web.config.file: cannot be combined"),
            "{err}"
        );
    }

    #[test]
    fn the_file_is_strict_and_errors_name_the_flag() {
        let dir = temp_dir("web-config");
        let unknown = write(&dir, "unknown.yml", "basic_auth_users: {}\nrate_limit: 3\n");
        let err = from(WebSecurityArgs {
            config_file: Some(unknown),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("--web.config.file: "), "{err}");
        assert!(err.contains("rate_limit"), "{err}");

        let plain = write(&dir, "plain.yml", "basic_auth_users:\n  alice: hunter2\n");
        let err = from(WebSecurityArgs {
            config_file: Some(plain),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("\"alice\" is not a bcrypt hash"), "{err}");
        assert!(!err.contains("hunter2"));

        let missing = write(
            &dir,
            "missing.yml",
            "tls_server_config:\n  cert_file: nowhere.crt\n  key_file: nowhere.key\n",
        );
        let err = from(WebSecurityArgs {
            config_file: Some(missing),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("nowhere.crt"), "{err}");

        let users = write(
            &dir,
            "users.yml",
            "basic_auth_users:\n  alice: $2y$04$abcdefghijklmnopqrstuu5bVXbTnRDLBzHx9Y3xmOEPgHLaaxz2u\n",
        );
        let web = from(WebSecurityArgs {
            config_file: Some(users),
            ..Default::default()
        })
        .unwrap();
        assert!(web.tls.is_none() && web.auth.is_some());
    }

    #[test]
    fn expired_and_expiring_certificates_are_reported() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let path = Path::new("server.pem");
        let day = std::time::Duration::from_secs(86400);
        let at = |y: i32, m: u8, d: u8| {
            std::time::UNIX_EPOCH
                + day
                    * u32::try_from(rcgen::date_time_ymd(y, m, d).unix_timestamp() / 86400).unwrap()
        };
        assert_eq!(
            warn_if_expiring(path, &der, at(2022, 6, 1)).as_deref(),
            Some("expired on 2021-01-01T00:00:00Z")
        );
        assert_eq!(
            warn_if_expiring(path, &der, at(2019, 6, 1)).as_deref(),
            Some("not valid before 2020-01-01T00:00:00Z")
        );
        assert_eq!(
            warn_if_expiring(path, &der, at(2020, 12, 25)).as_deref(),
            Some("expires on 2021-01-01T00:00:00Z, in 7 days")
        );
        assert_eq!(warn_if_expiring(path, &der, at(2020, 6, 1)), None);
    }

    #[test]
    fn tls_versions_are_checked() {
        assert_eq!(protocol_versions((None, None), "f").unwrap().len(), 2);
        assert_eq!(
            protocol_versions((Some("TLS13"), None), "f").unwrap(),
            vec![&rustls::version::TLS13]
        );
        assert!(protocol_versions((Some("TLS10"), None), "f").is_err());
        assert!(protocol_versions((Some("TLS13"), Some("TLS12")), "f").is_err());
    }
}
