//! UAA client credentials: fetches the token the Firehose handshake needs,
//! caches it, and renews it at 80 % of its lifetime or at once when the
//! Traffic Controller rejects it.

use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError, TokenResponse, TokenUrl,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::SourceConfig;
use crate::telemetry::Telemetry;

/// Lifetime assumed when UAA does not say (`expires_in` absent).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

type UaaClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why no token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaaError {
    /// UAA answered and refused the client (wrong id or secret, or grant not allowed).
    #[error("UAA refused the client credentials: {0}")]
    Credentials(String),
    /// UAA could not be reached or did not answer in time.
    #[error("UAA unreachable: {0}")]
    Unreachable(String),
    /// UAA answered with something that is not a token.
    #[error("unexpected answer from UAA: {0}")]
    BadResponse(String),
}

#[derive(Debug, Clone)]
struct CachedToken {
    authorization: Arc<str>,
    renew_at: Instant,
}

/// A cached client-credentials token.
#[derive(Debug)]
pub struct TokenSource {
    client: UaaClient,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
    telemetry: Telemetry,
}

impl TokenSource {
    /// A token source for the client in `config`.
    pub fn new(config: &SourceConfig, telemetry: Telemetry) -> Result<Self, UaaError> {
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
            .set_token_uri(TokenUrl::from_url(config.token_url.clone()));
        let http = reqwest::Client::builder()
            // Following redirects would hand the credentials to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.uaa_timeout)
            .danger_accept_invalid_certs(config.skip_ssl_verify)
            .build()
            .map_err(|e| UaaError::Unreachable(e.to_string()))?;
        Ok(Self {
            client,
            http,
            cached: Mutex::new(None),
            telemetry,
        })
    }

    /// The `Authorization` header value, `bearer <token>` (lower case, as the
    /// Traffic Controller strips exactly that prefix). Fetches a token when
    /// none is cached or the cached one is due for renewal.
    pub async fn authorization(&self) -> Result<Arc<str>, UaaError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(token.authorization.clone());
        }
        let renewing = cached.is_some();
        let token = self.fetch().await?;
        if renewing {
            tracing::info!("UAA token renewed");
        } else {
            tracing::info!("UAA token obtained");
        }
        let authorization = token.authorization.clone();
        *cached = Some(token);
        Ok(authorization)
    }

    /// Forgets `rejected` so that the next call fetches a new token. A token
    /// already replaced by another caller is left alone.
    pub async fn invalidate(&self, rejected: &str) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|t| &*t.authorization == rejected)
        {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<CachedToken, UaaError> {
        let result = self
            .client
            .exchange_client_credentials()
            .request_async(&self.http)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let error = classify(e);
                let label = match error {
                    UaaError::Credentials(_) => "credentials",
                    UaaError::Unreachable(_) | UaaError::BadResponse(_) => "error",
                };
                self.telemetry.token_requests(label).inc();
                return Err(error);
            }
        };
        self.telemetry.token_requests("success").inc();
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        Ok(CachedToken {
            authorization: Arc::from(format!("bearer {}", response.access_token().secret())),
            renew_at: Instant::now() + lifetime.mul_f64(0.8),
        })
    }
}

fn classify<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> UaaError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut text = r.error().to_string();
            if let Some(description) = r.error_description() {
                text = format!("{text}: {description}");
            }
            UaaError::Credentials(text)
        }
        RequestTokenError::Request(e) => {
            let mut text = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            UaaError::Unreachable(text)
        }
        RequestTokenError::Parse(e, body) => {
            let body = String::from_utf8_lossy(&body);
            let body: String = body.chars().take(200).collect();
            UaaError::BadResponse(format!("{e} (body: {body:?})"))
        }
        RequestTokenError::Other(text) => UaaError::BadResponse(text),
    }
}
