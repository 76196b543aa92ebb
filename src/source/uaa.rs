//! UAA client credentials: fetches the token the Firehose handshake needs,
//! caches it, and renews it at 80 % of its lifetime or at once when the
//! Traffic Controller rejects it.

//!
//! The request is one form POST, built here rather than by an OAuth crate,
//! so that the answer is read only up to [`MAX_RESPONSE_BYTES`] and no
//! error ever carries its body: errors name the field at fault and how.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{self, HeaderValue};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::UaaConfig;
use crate::config::ConfigError;
use crate::telemetry::Telemetry;

/// Lifetime assumed when UAA does not say (`expires_in` absent).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

/// Longest lifetime believed: a token is renewed at least daily, and no
/// `expires_in` can overflow the clock.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Largest answer read from UAA; a token response is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Largest token used: larger ones would not pass as a header.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;

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
pub struct TokenSource {
    token_url: url::Url,
    /// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 asks.
    basic: HeaderValue,
    /// What no error text may hold: the secret and the header carrying it.
    secrets: Vec<String>,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
    telemetry: Telemetry,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A token source for the client in `config`, verifying UAA's
    /// certificate unless `skip_ssl_verify`.
    pub fn new(
        config: &UaaConfig,
        skip_ssl_verify: bool,
        telemetry: Telemetry,
    ) -> Result<Self, UaaError> {
        let encode =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        let pair = format!(
            "{}:{}",
            encode(&config.client_id),
            encode(config.client_secret.expose())
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        let mut basic = HeaderValue::from_str(&format!("Basic {encoded}"))
            .map_err(|_| UaaError::BadResponse("client credentials do not fit a header".into()))?;
        basic.set_sensitive(true);
        let secrets = [config.client_secret.expose().to_owned(), encoded]
            .into_iter()
            .filter(|s| s.len() >= 4)
            .collect();
        let mut http = reqwest::Client::builder()
            // Following redirects would hand the credentials to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            // A token is fetched every few hours at most: a pooled connection
            // would only be a stale one by then.
            .pool_max_idle_per_host(0)
            .danger_accept_invalid_certs(skip_ssl_verify);
        for cert in &config.ca {
            let cert = reqwest::Certificate::from_der(cert)
                .map_err(|e| UaaError::Unreachable(format!("--uaa.ca-file: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| UaaError::Unreachable(e.to_string()))?;
        Ok(Self {
            token_url: config.token_url.clone(),
            basic,
            secrets,
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
        let token = match self.fetch().await {
            Ok(token) => token,
            Err(error) => {
                let label = match error {
                    UaaError::Credentials(_) => "credentials",
                    UaaError::Unreachable(_) | UaaError::BadResponse(_) => "error",
                };
                self.telemetry.token_requests(label).inc();
                return Err(error);
            }
        };
        self.telemetry.token_requests("success").inc();
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
        let response = self
            .http
            .post(self.token_url.clone())
            .header(header::AUTHORIZATION, self.basic.clone())
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|e| UaaError::Unreachable(self.redact(&error_chain(&e))))?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                Capped::TooLarge => UaaError::BadResponse(format!(
                    "HTTP {status}: the answer is larger than {} KiB",
                    MAX_RESPONSE_BYTES >> 10
                )),
                Capped::Failed(e) => UaaError::Unreachable(self.redact(&error_chain(&e))),
            })?;
        if status != 200 {
            return Err(self.refusal(status, &body));
        }
        let token = parse_token(&body).map_err(|problem| {
            UaaError::BadResponse(format!("HTTP 200 but not a token response: {problem}"))
        })?;
        Ok(CachedToken {
            authorization: token.authorization,
            renew_at: Instant::now() + token.lifetime.mul_f64(0.8),
        })
    }

    /// Sorts an answer other than 200: any 401, or a 400 that names the
    /// client, is a problem with the credentials; anything else a failure
    /// of UAA, worth retrying. Only the OAuth `error` and
    /// `error_description` are kept, bounded and with the credentials
    /// taken out: a body may echo what was sent.
    fn refusal(&self, status: u16, body: &[u8]) -> UaaError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let error = json
            .as_ref()
            .and_then(|j| j.get("error")?.as_str())
            .filter(|e| {
                !e.is_empty()
                    && e.len() <= 64
                    && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        let text = match error {
            Some(error) => {
                let description = json
                    .as_ref()
                    .and_then(|j| j.get("error_description")?.as_str())
                    .map(|d| {
                        let d: String = d.chars().take(200).collect();
                        self.redact(&d)
                    });
                match description {
                    Some(d) if !d.is_empty() => format!("HTTP {status}: {error}: {d}"),
                    _ => format!("HTTP {status}: {error}"),
                }
            }
            None => format!(
                "HTTP {status} with a body of {} bytes that is not an OAuth error",
                body.len()
            ),
        };
        let refused = status == 401
            || (status == 400 && matches!(error, Some("invalid_client" | "unauthorized_client")));
        if refused {
            UaaError::Credentials(text)
        } else {
            UaaError::BadResponse(text)
        }
    }

    /// `text` with the secret and the credentials header replaced.
    fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    }
}

/// A token and how long it lasts.
#[derive(Debug)]
struct Token {
    authorization: Arc<str>,
    lifetime: Duration,
}

/// Reads a token response. Errors say which field is wrong and how, never
/// what it holds: the body carries the token.
fn parse_token(body: &[u8]) -> Result<Token, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => "the JSON ends early".to_owned(),
        _ => format!(
            "not JSON (error at line {} column {})",
            e.line(),
            e.column()
        ),
    })?;
    let object = json
        .as_object()
        .ok_or_else(|| format!("a JSON {} instead of an object", kind(&json)))?;
    let field = |name: &str| object.get(name).filter(|v| !v.is_null());
    let access_token = match field("access_token") {
        None => return Err("no access_token".into()),
        Some(Value::String(t)) if t.is_empty() => return Err("access_token is empty".into()),
        Some(Value::String(t)) => t,
        Some(other) => return Err(format!("access_token is a {}, not a string", kind(other))),
    };
    match field("token_type") {
        None => return Err("no token_type".into()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(_)) => return Err("token_type is not bearer".into()),
        Some(other) => return Err(format!("token_type is a {}, not a string", kind(other))),
    }
    let lifetime = match field("expires_in") {
        None => DEFAULT_LIFETIME,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(seconds) => Duration::from_secs(seconds).min(MAX_LIFETIME),
            None if n.as_i64().is_some() => return Err("expires_in is negative".into()),
            None => return Err("expires_in is not a whole number of seconds".into()),
        },
        Some(other) => return Err(format!("expires_in is a {}, not a number", kind(other))),
    };
    let authorization = format!("bearer {access_token}");
    if authorization.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "access_token is {} bytes, more than {} KiB",
            access_token.len(),
            MAX_TOKEN_BYTES >> 10
        ));
    }
    if HeaderValue::from_str(&authorization).is_err() {
        return Err("access_token holds characters a header cannot carry".into());
    }
    Ok(Token {
        authorization: Arc::from(authorization),
        lifetime,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

enum Capped {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body, or `TooLarge` as soon as it passes `max` bytes.
async fn read_capped(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Capped> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(Capped::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, one after the other.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// `<uaa>/oauth/token` from a UAA base URL.
pub fn token_url(uaa: &str) -> Result<url::Url, ConfigError> {
    let flag = "--uaa.url";
    let url = url::Url::parse(uaa)
        .map_err(|e| ConfigError::new(flag, format!("{uaa:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(ConfigError::new(
            flag,
            format!("{uaa:?} must be an https:// or http:// URL"),
        ));
    }
    let base = url.as_str().trim_end_matches('/');
    url::Url::parse(&format!("{base}/oauth/token"))
        .map_err(|e| ConfigError::new(flag, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(body: &str) -> String {
        parse_token(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_token_responses_say_what_is_wrong_and_never_what_was_sent() {
        let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig";
        let cases = [
            (
                format!(
                    r#"{{"access_token":"{token}","token_type":"bearer","expires_in":"3600"}}"#
                ),
                "expires_in is a string, not a number",
            ),
            (
                format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":-5}}"#),
                "expires_in is negative",
            ),
            (
                format!(
                    r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3599.5}}"#
                ),
                "expires_in is not a whole number of seconds",
            ),
            (
                format!(r#"{{"access_token":"{token}","expires_in":3600}}"#),
                "no token_type",
            ),
            (
                format!(r#"{{"access_token":"{token}","token_type":"mac"}}"#),
                "token_type is not bearer",
            ),
            (r#"{"token_type":"bearer"}"#.to_owned(), "no access_token"),
            (
                r#"{"access_token":"","token_type":"bearer"}"#.to_owned(),
                "access_token is empty",
            ),
            (
                r#"{"access_token":42,"token_type":"bearer"}"#.to_owned(),
                "access_token is a number, not a string",
            ),
            (
                format!(r#"{{"access_token":"{token}\n","token_type":"bearer"}}"#),
                "access_token holds characters a header cannot carry",
            ),
            (
                format!(r#"["{token}"]"#),
                "a JSON array instead of an object",
            ),
            (
                format!(r#"{{"access_token":"{token}""#),
                "the JSON ends early",
            ),
            (
                format!(r#"access_token={token}&token_type=bearer"#),
                "not JSON (error at line 1 column 1)",
            ),
        ];
        for (body, expected) in cases {
            let got = problem(&body);
            assert_eq!(got, expected, "{body}");
            assert!(!got.contains("c2VjcmV0"), "{got}");
        }
    }

    #[test]
    fn lifetimes_are_clamped_so_that_no_clock_overflows() {
        let token = |expires: &str| {
            parse_token(
                format!(r#"{{"access_token":"t","token_type":"bearer","expires_in":{expires}}}"#)
                    .as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(token("18446744073709551615").lifetime, MAX_LIFETIME);
        assert_eq!(token("3600").lifetime, Duration::from_secs(3600));
        assert_eq!(token("null").lifetime, DEFAULT_LIFETIME);
        let renew_at = Instant::now() + token("18446744073709551615").lifetime.mul_f64(0.8);
        assert!(renew_at > Instant::now());
        let huge = "t".repeat(MAX_TOKEN_BYTES);
        let err =
            parse_token(format!(r#"{{"access_token":"{huge}","token_type":"bearer"}}"#).as_bytes())
                .unwrap_err();
        assert_eq!(err, "access_token is 65536 bytes, more than 64 KiB");
    }
}
