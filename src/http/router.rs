//! The routes: `/metrics` (path configurable) in the format the scraper
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
use tower_http::compression::CompressionLayer;

use crate::exposition::{Exposition, Format};
use crate::http::basic_auth::{self, BasicAuth};
use crate::http::scrape_cache::{EncodeError, ScrapeCache, accepts_gzip};
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
    /// The transport read, for the landing page: "RLP", say.
    pub source: &'static str,
    /// Where metrics are served.
    pub telemetry_path: String,
    /// Whether OpenMetrics may be negotiated.
    pub openmetrics: bool,
    /// The last body of each format, shared by scrapes that overlap.
    pub scrapes: ScrapeCache,
    /// Set, with why, once a task the exporter needs has failed.
    pub failed: watch::Receiver<Option<String>>,
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
        Ok(
            tokio::task::spawn_blocking(move || Bytes::from(encoder.exposition.encode(format)))
                .await?,
        )
    };
    let failed = |e: EncodeError| {
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
         <p>{source}: <strong id=\"state\">{stream}</strong></p>\n\
         <p>Series held: {series}</p>\n\
         <p><a href=\"{path}\">Metrics</a> · <a href=\"/-/ready\">Readiness</a> · <a href=\"/-/healthy\">Liveness</a></p>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        source = state.source,
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
            source: "Firehose",
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
