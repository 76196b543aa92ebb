//! UAA client credentials: fetches the token the Firehose handshake needs,
//! caches it, and renews it at 80 % of its lifetime or at once when the
//! Traffic Controller rejects it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
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
            // A token is fetched every few hours at most: a pooled connection
            // would only be a stale one by then.
            .pool_max_idle_per_host(0)
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
        // oauth2 parses an error body the same whatever the status; keep the
        // status to tell a refusal of the client from a server failure.
        let http = StatusRecorder {
            http: &self.http,
            status: AtomicU16::new(0),
        };
        let result = self
            .client
            .exchange_client_credentials()
            .request_async(&http)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                let error = classify(e, http.status.load(Ordering::Relaxed));
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

/// The HTTP client for oauth2, remembering the status of the answer.
struct StatusRecorder<'a> {
    http: &'a reqwest::Client,
    status: AtomicU16,
}

type HttpFuture<'c> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<oauth2::HttpResponse, oauth2::HttpClientError<reqwest::Error>>,
            > + Send
            + Sync
            + 'c,
    >,
>;

impl<'c> oauth2::AsyncHttpClient<'c> for StatusRecorder<'_> {
    type Error = oauth2::HttpClientError<reqwest::Error>;
    type Future = HttpFuture<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = oauth2::AsyncHttpClient::call(self.http, request).await;
            if let Ok(r) = &response {
                self.status.store(r.status().as_u16(), Ordering::Relaxed);
            }
            response
        })
    }
}

/// Sorts a failed token request: any 401, or a 400 that names the client,
/// is a problem with the credentials; anything else a failure of UAA or of
/// the network, worth retrying.
fn classify<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
    status: u16,
) -> UaaError {
    use oauth2::basic::BasicErrorResponseType as Kind;
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut text = r.error().to_string();
            if let Some(description) = r.error_description() {
                text = format!("{text}: {description}");
            }
            let refused = status == 401
                || (status == 400
                    && matches!(r.error(), Kind::InvalidClient | Kind::UnauthorizedClient));
            if refused {
                UaaError::Credentials(format!("HTTP {status}: {text}"))
            } else {
                UaaError::BadResponse(format!("HTTP {status}: {text}"))
            }
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
            if status == 401 {
                UaaError::Credentials(format!("HTTP 401: {body:?}"))
            } else if status != 200 {
                UaaError::BadResponse(format!("HTTP {status}: {body:?}"))
            } else {
                UaaError::BadResponse(format!("{e} (body: {body:?})"))
            }
        }
        RequestTokenError::Other(text) => UaaError::BadResponse(text),
    }
}
