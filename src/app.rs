//! The exporter assembled: source → ingest → store ← exposition ← HTTP.
//! `main` parses flags and calls [`run`]; tests call [`Exporter::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{CommonArgs, ConfigError, SourceConfig};
use crate::exposition::{Exposition, Format};
use crate::filter::Filters;
use crate::ingest::Ingest;
use crate::naming::native::NativeScheme;
use crate::server::{self, AppState};
use crate::source::firehose::{FirehoseSource, SourceError};
use crate::source::{FrameSender, StreamState, StreamStates};
use crate::store::SeriesStore;
use crate::telemetry::Telemetry;
use crate::uaa::TokenSource;
use crate::web_config::WebSecurity;

/// Batches that may wait between reading and decoding.
const QUEUE_BATCHES: usize = 4096;
/// Bytes of frames that may wait between reading and decoding (at least
/// four of the largest frames).
const QUEUE_BYTES: usize = 16 << 20;
/// Time allowed for an orderly stop before the remaining tasks are abandoned.
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// Everything the exporter needs to run.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// UAA and Firehose.
    pub source: SourceConfig,
    /// Series not updated for this long disappear.
    pub expiration: Duration,
    /// Optional constant `environment` label.
    pub environment: Option<String>,
    /// What to leave out before the store.
    pub filters: Filters,
    /// Tags not turned into labels.
    pub drop_tags: Vec<String>,
    /// Most series held.
    pub max_series: usize,
    /// Where to serve.
    pub listen_address: SocketAddr,
    /// Path of the metrics.
    pub telemetry_path: String,
    /// Whether OpenMetrics may be negotiated.
    pub openmetrics: bool,
    /// TLS and basic authentication of the endpoint.
    pub web: WebSecurity,
}

impl ExporterConfig {
    /// Settings from the shared flags and a checked source; the filters
    /// decide what the subscription asks for.
    pub fn new(mut source: SourceConfig, common: &CommonArgs) -> Result<Self, ConfigError> {
        let filters = common.filters()?;
        source.set_filter_type(filters.subscription());
        Ok(Self {
            source,
            expiration: common.expiration,
            environment: common.environment.clone(),
            filters,
            drop_tags: common.drop_tags.clone(),
            max_series: usize::try_from(common.max_series).unwrap_or(usize::MAX),
            listen_address: common.listen_address,
            telemetry_path: common.telemetry_path.clone(),
            openmetrics: !common.disable_openmetrics,
            web: common.web_security()?,
        })
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is taken or not ours.
    #[error("--web.listen-address: cannot listen on {address}: {error}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// TLS or HTTP client set-up failed.
    #[error("{0}")]
    Setup(String),
}

/// A running exporter.
#[derive(Debug)]
pub struct Exporter {
    /// The address /metrics is served on (the real port when 0 was asked).
    pub address: SocketAddr,
    /// The series store.
    pub store: Arc<SeriesStore>,
    /// The self metrics.
    pub telemetry: Telemetry,
    /// The combined state of the connections.
    pub stream: watch::Receiver<StreamState>,
    http: Arc<AppState>,
    shutdown: CancellationToken,
    sources: Vec<JoinHandle<Result<(), SourceError>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// Binds the listener and starts every task.
    pub async fn start(config: ExporterConfig) -> Result<Self, StartError> {
        let telemetry = Telemetry::new();
        let store = Arc::new(
            SeriesStore::new(config.expiration, telemetry.clone())
                .with_max_series(config.max_series),
        );
        let (states, state_rx) = StreamStates::new(config.source.connections);
        let listener = TcpListener::bind(config.listen_address)
            .await
            .map_err(|error| StartError::Listen {
                address: config.listen_address,
                error,
            })?;
        let address = listener
            .local_addr()
            .map_err(|e| StartError::Setup(e.to_string()))?;

        let tokens = Arc::new(
            TokenSource::new(&config.source, telemetry.clone())
                .map_err(|e| StartError::Setup(e.to_string()))?,
        );
        let ingest = Ingest::new(
            NativeScheme::new(config.environment.clone()).with_drop_tags(config.drop_tags.clone()),
            store.clone(),
            telemetry.clone(),
        )
        .with_filters(config.filters.clone());
        // One connection, queue and decoding task per --doppler.connections.
        let mut connections = Vec::with_capacity(config.source.connections);
        for index in 0..config.source.connections {
            let (frames, frames_rx) = FrameSender::channel(
                QUEUE_BATCHES,
                QUEUE_BYTES.max(config.source.max_frame_size.saturating_mul(4)),
                telemetry.clone(),
            );
            let source = FirehoseSource::new(
                &config.source,
                tokens.clone(),
                frames,
                telemetry.clone(),
                states.reporter(index),
            )
            .map_err(StartError::Setup)?
            .with_index(index);
            connections.push((source, ingest.clone(), frames_rx));
        }

        let state = Arc::new(AppState {
            exposition: Exposition::new(store.clone(), telemetry.clone()),
            store: store.clone(),
            stream: state_rx.clone(),
            telemetry_path: config.telemetry_path.clone(),
            openmetrics: config.openmetrics,
            scrapes: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let http_shutdown = shutdown.clone();
        let mut sources = Vec::with_capacity(connections.len());
        let mut tasks = Vec::new();
        for (source, ingest, frames_rx) in connections {
            let source_stop = shutdown.clone();
            sources.push(tokio::spawn(async move {
                let result = source.run(source_stop.clone()).await;
                // A source that gave up takes the exporter down with it, so
                // that the supervisor restarts the process.
                source_stop.cancel();
                result
            }));
            tasks.push(tokio::spawn(ingest.run(frames_rx)));
        }
        let sweeper = tokio::spawn(store.clone().run_sweeper());
        let sweeper_stop = shutdown.clone();
        let http_state = state.clone();
        let web = config.web.clone();
        tasks.extend([
            tokio::spawn(async move {
                let router = server::router(http_state, web.auth);
                if let Err(error) = server::serve(listener, web.tls, router, http_shutdown).await {
                    tracing::error!(%error, "HTTP server failed");
                }
            }),
            tokio::spawn(async move {
                sweeper_stop.cancelled().await;
                sweeper.abort();
            }),
        ]);
        tracing::info!(
            address = %address,
            tls = config.web.tls.is_some(),
            basic_auth = config.web.auth.is_some(),
            path = %config.telemetry_path,
            firehose = %config.source.firehose_url,
            connections = config.source.connections,
            "serving metrics"
        );
        Ok(Self {
            address,
            store,
            telemetry,
            stream: state_rx,
            http: state,
            shutdown,
            sources,
            tasks,
        })
    }

    /// How many scrape bodies were encoded so far in `format` (overlapping
    /// scrapes share one).
    pub fn scrape_encodings(&self, format: Format) -> u64 {
        self.http.exposition.encodings(format)
    }

    /// A handle that stops the exporter when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled (or the source gives up),
    /// then closes the websocket with 1000 and stops serving. Tasks still
    /// running after a few seconds are abandoned.
    pub async fn wait(self) -> Result<(), SourceError> {
        self.shutdown.cancelled().await;
        let sources = self.sources;
        let tasks = self.tasks;
        let orderly = async move {
            let mut result = Ok(());
            for source in sources {
                let ended = source.await.unwrap_or(Ok(()));
                if result.is_ok() {
                    result = ended;
                }
            }
            for task in tasks {
                let _ = task.await;
            }
            result
        };
        let result = match tokio::time::timeout(STOP_TIMEOUT, orderly).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!("stopping without waiting any longer for open connections");
                Ok(())
            }
        };
        tracing::info!("stopped");
        result
    }

    /// Stops now.
    pub async fn stop(self) -> Result<(), SourceError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Why the exporter stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The source gave up.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Runs the exporter until `shutdown` is cancelled or its source gives up.
pub async fn run(config: ExporterConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let exporter = Exporter::start(config).await?;
    let token = exporter.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        token.cancel();
    });
    exporter.wait().await?;
    Ok(())
}
