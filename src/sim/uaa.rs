//! A UAA token endpoint: `POST /oauth/token` with client credentials by HTTP
//! Basic or in the form, answering as UAA does, and failing on command: down
//! (connections reset), HTTP 500, 401 `Bad credentials`, or slow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use tokio::net::{TcpListener, TcpStream};

use super::{SimClient, TokenBook};

/// A running simulated UAA.
#[derive(Debug)]
pub struct SimUaa {
    /// Where it listens.
    pub address: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

/// How the simulated UAA behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UaaMode {
    /// Issues tokens to the right client.
    #[default]
    Normal,
    /// Resets every connection before answering.
    Down,
    /// Answers HTTP 500.
    ServerError,
    /// Answers 401 `Bad credentials` whatever the credentials.
    BadCredentials,
    /// Answers normally after the given delay.
    Slow(std::time::Duration),
    /// Answers this status and JSON body, whatever was asked.
    Canned(u16, &'static str),
    /// Answers this status with the request's headers as a plain-text body,
    /// as a misconfigured proxy or debugging endpoint does.
    EchoHeaders(u16),
    /// Answers 200 with a body of this many bytes that never parses.
    Huge(u64),
}

#[derive(Debug)]
struct Inner {
    client: SimClient,
    book: Arc<TokenBook>,
    refused: AtomicU64,
    requests: AtomicU64,
    mode: Mutex<UaaMode>,
}

impl Inner {
    fn mode(&self) -> UaaMode {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts connections, resetting them while UAA is down.
struct FaultyListener {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            if self.inner.mode() == UaaMode::Down {
                self.inner.requests.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_zero_linger();
                drop(stream);
                continue;
            }
            return (stream, address);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl SimUaa {
    /// Serves on `address`, issuing tokens into `book`.
    pub async fn start(
        address: SocketAddr,
        client: SimClient,
        book: Arc<TokenBook>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let inner = Arc::new(Inner {
            client,
            book,
            refused: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            mode: Mutex::new(UaaMode::Normal),
        });
        let app = Router::new()
            .route("/oauth/token", post(token))
            .with_state(inner.clone());
        let listener = FaultyListener {
            listener,
            inner: inner.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            inner,
            task,
        })
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.inner.book.issued()
    }

    /// Requests refused for bad credentials.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Token requests received, answered or not.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Changes how it behaves from now on.
    pub fn set_mode(&self, mode: UaaMode) {
        *self.inner.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// Revokes every token issued so far: the Traffic Controller will refuse them.
    pub fn revoke_all(&self) {
        self.inner.book.revoke_all();
    }
}

impl Drop for SimUaa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    inner.requests.fetch_add(1, Ordering::Relaxed);
    match inner.mode() {
        UaaMode::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({
                    "error": "server_error",
                    "error_description": "Internal Server Error"
                })),
            )
                .into_response();
        }
        UaaMode::Slow(delay) => tokio::time::sleep(delay).await,
        UaaMode::Canned(status, body) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        UaaMode::EchoHeaders(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let echo: String = headers
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                .collect();
            return (status, echo).into_response();
        }
        UaaMode::Huge(size) => {
            let chunk = bytes::Bytes::from(vec![b' '; 64 << 10]);
            let chunks = size.div_ceil(chunk.len() as u64);
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            return (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response();
        }
        UaaMode::Normal | UaaMode::Down | UaaMode::BadCredentials => {}
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": "unsupported_grant_type",
                "error_description": "Only client_credentials is served here"
            })),
        )
            .into_response();
    }
    let credentials = basic_credentials(&headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    let accepted = inner.mode() != UaaMode::BadCredentials
        && credentials.is_some_and(|(id, secret)| {
            id == inner.client.id && secret == inner.client.secret.expose()
        });
    if !accepted {
        inner.refused.fetch_add(1, Ordering::Relaxed);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"UAA/client\", error=\"unauthorized\", error_description=\"Bad credentials\"",
            )],
            axum::Json(serde_json::json!({"error": "unauthorized", "error_description": "Bad credentials"})),
        )
            .into_response();
    }
    let lifetime = inner.client.token_lifetime;
    let access_token = inner.book.issue(lifetime);
    axum::Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs().max(1),
        "scope": "doppler.firehose uaa.none",
        "jti": format!("{:032x}", rand::random::<u128>()),
    }))
    .into_response()
}

/// Id and secret from `Authorization: Basic`, each form-decoded as RFC 6749 asks.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
