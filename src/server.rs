//! The HTTP side: `/metrics` (path configurable) in the format the scraper
//! asks for, gzipped when it accepts that, a landing page, liveness and
//! readiness.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use bytes::Bytes;
use tokio::sync::Mutex;
use tower_http::compression::CompressionLayer;

use crate::basic_auth::{self, BasicAuth};
use crate::exposition::{Exposition, Format};
use crate::source::StreamState;
use crate::store::SeriesStore;

/// What the handlers read.
#[derive(Debug)]
pub struct AppState {
    /// Encoder of the scrape body.
    pub exposition: Exposition,
    /// For the landing page's counts.
    pub store: Arc<SeriesStore>,
    /// The source's state.
    pub stream: watch::Receiver<StreamState>,
    /// Where metrics are served.
    pub telemetry_path: String,
    /// Whether OpenMetrics may be negotiated.
    pub openmetrics: bool,
    /// The last body of each format, shared by scrapes that overlap.
    pub scrapes: ScrapeCache,
    /// Set, with why, once a task the exporter needs has failed.
    pub failed: watch::Receiver<Option<String>>,
}

/// One body, when its encoding finished, and its gzipped form once a
/// scraper has asked for it.
#[derive(Debug)]
struct Encoded {
    finished: Instant,
    body: Bytes,
    gzipped: tokio::sync::OnceCell<Bytes>,
}

/// A scrape body as shared by the scrapes that overlap.
#[derive(Debug, Clone)]
pub struct SharedBody(Arc<Encoded>);

impl SharedBody {
    /// The body as encoded.
    pub fn plain(&self) -> Bytes {
        self.0.body.clone()
    }

    /// The body gzipped, compressed once however many scrapers ask.
    pub async fn gzipped(&self) -> Result<Bytes, String> {
        self.0
            .gzipped
            .get_or_try_init(|| {
                let body = self.0.body.clone();
                async move {
                    tokio::task::spawn_blocking(move || gzip(&body))
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await
            .cloned()
    }
}

fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Whether an `Accept-Encoding` header accepts gzip (`gzip` or `*`, with a
/// weight above zero).
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    value.split(',').any(|entry| {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
    })
}

/// Scrapes that arrive while one is being encoded wait for it and share its
/// body (and its gzipped form) instead of encoding the store again; a scrape
/// that finds no encoding under way starts one, so no body is older than
/// the scrape that gets it.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    text: Mutex<Option<SharedBody>>,
    openmetrics: Mutex<Option<SharedBody>>,
}

impl ScrapeCache {
    /// A body in `format` at least as fresh as `arrived`, encoded by `encode` if needed.
    async fn body<F>(
        &self,
        format: Format,
        arrived: Instant,
        encode: F,
    ) -> Result<SharedBody, String>
    where
        F: std::future::Future<Output = Result<Bytes, String>>,
    {
        let mut slot = match format {
            Format::PrometheusText => self.text.lock().await,
            Format::OpenMetrics => self.openmetrics.lock().await,
        };
        if let Some(shared) = slot.as_ref().filter(|e| e.0.finished >= arrived) {
            return Ok(shared.clone());
        }
        let body = encode.await?;
        let shared = SharedBody(Arc::new(Encoded {
            finished: Instant::now(),
            body,
            gzipped: tokio::sync::OnceCell::new(),
        }));
        *slot = Some(shared.clone());
        Ok(shared)
    }
}

/// The routes, without a socket: usable with `tower::ServiceExt::oneshot`.
/// With `auth`, every route but liveness asks for credentials.
pub fn router(state: Arc<AppState>, auth: Option<Arc<BasicAuth>>) -> Router {
    let liveness = state.failed.clone();
    let mut guarded = Router::new()
        .route(&state.telemetry_path, get(metrics))
        .route("/", get(landing))
        .route("/-/ready", get(ready))
        .with_state(state);
    if let Some(auth) = auth {
        guarded = guarded.route_layer(middleware::from_fn_with_state(auth, basic_auth::require));
    }
    Router::new()
        .route("/-/healthy", get(move || healthy(liveness.clone())))
        .merge(guarded)
        .layer(CompressionLayer::new())
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let arrived = Instant::now();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept, state.openmetrics);
    let encoder = state.clone();
    // Encoding is CPU work proportional to the store: keep it off the
    // runtime's worker threads.
    let encode = async move {
        tokio::task::spawn_blocking(move || Bytes::from(encoder.exposition.encode(format)))
            .await
            .map_err(|e| e.to_string())
    };
    let failed = |e: String| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape failed: {e}\n"),
        )
            .into_response()
    };
    let shared = match state.scrapes.body(format, arrived, encode).await {
        Ok(shared) => shared,
        Err(e) => return failed(e),
    };
    let gzip = accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    let headers = (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        AppendHeaders([(header::VARY, "Accept"), (header::VARY, "Accept-Encoding")]),
    );
    if gzip {
        match shared.gzipped().await {
            Ok(body) => (headers, [(header::CONTENT_ENCODING, "gzip")], body).into_response(),
            Err(e) => failed(e),
        }
    } else {
        (headers, shared.plain()).into_response()
    }
}

/// 200 while every task runs; 503, saying which failed, once one has.
async fn healthy(failed: watch::Receiver<Option<String>>) -> Response {
    match failed.borrow().as_deref() {
        None => "OK\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let stream = state.stream.borrow().clone();
    let status = if stream == StreamState::Streaming {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{stream}\n")).into_response()
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    let stream = state.stream.borrow().to_string();
    let path = escape(&state.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>cf-firehose-exporter</title></head>\n\
         <body><h1>cf-firehose-exporter</h1>\n\
         <p>Cloud Foundry Firehose metrics for Prometheus, version {version}.</p>\n\
         <p>Firehose: <strong id=\"state\">{stream}</strong></p>\n\
         <p>Series held: {series}</p>\n\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/ready\">Readiness</a> · <a href=\"/-/healthy\">Liveness</a></p>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        stream = escape(&stream),
        series = state.store.len(),
    ))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Duration;
    use tower::ServiceExt;

    fn app(stream: StreamState) -> (Router, watch::Sender<StreamState>) {
        let (router, tx, _failed) = app_with_health(stream);
        (router, tx)
    }

    fn app_with_health(
        stream: StreamState,
    ) -> (
        Router,
        watch::Sender<StreamState>,
        watch::Sender<Option<String>>,
    ) {
        let telemetry = Telemetry::new();
        let store = Arc::new(SeriesStore::new(Duration::from_secs(60), telemetry.clone()));
        let (tx, rx) = watch::channel(stream);
        let (failed, failed_rx) = watch::channel(None);
        let state = AppState {
            exposition: Exposition::new(store.clone(), telemetry),
            store,
            stream: rx,
            telemetry_path: "/custom".into(),
            openmetrics: true,
            scrapes: ScrapeCache::default(),
            failed: failed_rx,
        };
        (router(Arc::new(state), None), tx, failed)
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    #[tokio::test]
    async fn metrics_on_the_configured_path_with_the_text_content_type() {
        let (router, _tx) = app(StreamState::Starting);
        let (status, body, content_type) = get(&router, "/custom").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(body.contains("cf_firehose_exporter_up 0\n"), "{body}");
        assert_eq!(get(&router, "/metrics").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn scrapes_arriving_during_an_encoding_share_it_and_later_ones_do_not() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let cache = Arc::new(ScrapeCache::default());
        let encodings = Arc::new(AtomicU64::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some(gate)));
        let encode = |encodings: Arc<AtomicU64>, gate: Arc<Mutex<Option<_>>>| async move {
            let n = encodings.fetch_add(1, Ordering::SeqCst) + 1;
            let waiting: Option<tokio::sync::oneshot::Receiver<()>> = gate.lock().await.take();
            if let Some(waiting) = waiting {
                let _ = waiting.await;
            }
            Ok(Bytes::from(format!("body {n}")))
        };
        let first = {
            let (cache, e, g) = (cache.clone(), encodings.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .body(Format::PrometheusText, Instant::now(), encode(e, g))
                    .await
            })
        };
        while encodings.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Nine more arrive while the first is being encoded.
        let waiting: Vec<_> = (0..9)
            .map(|_| {
                let (cache, e, g) = (cache.clone(), encodings.clone(), gate.clone());
                let arrived = Instant::now();
                tokio::spawn(async move {
                    cache
                        .body(Format::PrometheusText, arrived, encode(e, g))
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().plain(), "body 1");
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap().plain(), "body 1");
        }
        assert_eq!(encodings.load(Ordering::SeqCst), 1);
        // One arriving afterwards gets a new body; another format is separate.
        let later = cache
            .body(
                Format::PrometheusText,
                Instant::now(),
                encode(encodings.clone(), gate.clone()),
            )
            .await;
        assert_eq!(later.unwrap().plain(), "body 2");
        let other = cache
            .body(
                Format::OpenMetrics,
                Instant::now(),
                encode(encodings.clone(), gate),
            )
            .await;
        assert_eq!(other.unwrap().plain(), "body 3");
    }

    #[tokio::test]
    async fn a_shared_body_is_gzipped_once_however_many_scrapers_ask() {
        let shared = SharedBody(Arc::new(Encoded {
            finished: Instant::now(),
            body: Bytes::from("cpu 1.5\n".repeat(1000)),
            gzipped: tokio::sync::OnceCell::new(),
        }));
        let asks: Vec<_> = (0..16)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move { shared.gzipped().await.unwrap() })
            })
            .collect();
        let mut bodies = Vec::new();
        for ask in asks {
            bodies.push(ask.await.unwrap());
        }
        // One compression: every answer is the same buffer.
        assert!(bodies.iter().all(|b| b.as_ptr() == bodies[0].as_ptr()));
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&bodies[0][..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, "cpu 1.5\n".repeat(1000));
    }

    #[test]
    fn gzip_is_accepted_by_name_or_star_unless_weighted_zero() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br, identity")));
        assert!(!accepts_gzip(None));
    }

    #[tokio::test]
    async fn landing_links_metrics_and_shows_state_escaped() {
        let (router, tx) = app(StreamState::BackingOff("<b>401</b>".into()));
        let (status, body, _) = get(&router, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<a href=\"/custom\">Metrics</a>"), "{body}");
        assert!(
            body.contains("reconnecting after: &lt;b&gt;401&lt;/b&gt;"),
            "{body}"
        );
        tx.send_replace(StreamState::Streaming);
        assert!(
            get(&router, "/")
                .await
                .1
                .contains("<strong id=\"state\">streaming</strong>")
        );
    }

    #[tokio::test]
    async fn liveness_fails_once_a_task_has_failed_and_says_which() {
        let (router, _tx, failed) = app_with_health(StreamState::Streaming);
        assert_eq!(get(&router, "/-/healthy").await.0, StatusCode::OK);
        failed.send_replace(Some("ingestion panicked: boom".into()));
        let (status, body, _) = get(&router, "/-/healthy").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "ingestion panicked: boom\n");
    }

    #[tokio::test]
    async fn readiness_follows_the_stream_and_liveness_does_not() {
        let (router, tx) = app(StreamState::Connecting);
        assert_eq!(
            get(&router, "/-/ready").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(&router, "/-/healthy").await.0, StatusCode::OK);
        tx.send_replace(StreamState::Streaming);
        assert_eq!(
            get(&router, "/-/ready").await,
            (
                StatusCode::OK,
                "streaming\n".into(),
                Some("text/plain; charset=utf-8".into())
            )
        );
    }
}
