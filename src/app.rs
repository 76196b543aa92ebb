//! The exporter assembled: source → ingest → store ← exposition ← HTTP.
//! `main` parses flags and calls [`run`]; tests call [`Exporter::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::cli::CommonArgs;
use crate::config::ConfigError;
use crate::exposition::CompatSelf;
use crate::exposition::remote_write::{ForwardConfig, Forwarding, RemoteWriteMetrics};
use crate::exposition::{Exposition, Format};
use crate::http::listener::{self, Limits};
use crate::http::router::{self, AppState};
use crate::http::web_config::WebSecurity;
use crate::ingest::Ingest;
use crate::ingest::filter::Filters;
use crate::naming::Naming;
use crate::naming::native::NativeScheme;
use crate::pinned::Pinned;
use crate::source::firehose::FirehoseSource;
use crate::source::gateway::GatewaySource;
use crate::source::rlp::RlpSource;
use crate::source::supervisor::{SourceError, Supervisor};
use crate::source::uaa::{TokenSource, UaaError};
use crate::source::{Endpoint, SourceConfig};
use crate::source::{FrameSender, StreamState, StreamStates};
use crate::store::{SeriesLimits, SeriesStore};
use crate::telemetry::Telemetry;

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
    /// The buckets of `http_duration_seconds`.
    pub http_buckets: Vec<f64>,
    /// Native names or the Go exporter's.
    pub naming: crate::naming::Naming,
    /// Most series held.
    pub max_series: usize,
    /// Bounds on the bytes of one series.
    pub series_limits: SeriesLimits,
    /// Where to serve.
    pub listen_address: SocketAddr,
    /// Path of the metrics.
    pub telemetry_path: String,
    /// Whether OpenMetrics may be negotiated.
    pub openmetrics: bool,
    /// TLS and basic authentication of the endpoint.
    pub web: WebSecurity,
    /// Timeouts and cap of the HTTP connections.
    pub http_limits: Limits,
    /// Remote-write endpoints, if any.
    pub forwarding: Option<ForwardConfig>,
    /// Whether /metrics serves the relayed series, not only the self metrics.
    pub expose_series: bool,
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
            http_buckets: common.http_buckets.clone(),
            naming: common.naming.naming()?,
            max_series: usize::try_from(common.max_series).unwrap_or(usize::MAX),
            series_limits: common.series_limits(),
            listen_address: common.listen_address,
            telemetry_path: common.telemetry_path.clone(),
            openmetrics: !common.disable_openmetrics,
            web: common.web_security()?,
            http_limits: common.http_limits(),
            forwarding: common.remote_write.forwarding()?,
            expose_series: !common.remote_write.disable_exposition,
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
    /// The listening socket has no local address.
    #[error("--web.listen-address: cannot read the address listened on: {0}")]
    LocalAddress(#[source] std::io::Error),
    /// The UAA client could not be built.
    #[error("cannot set up the UAA client: {0}")]
    Uaa(#[source] UaaError),
    /// The TLS client of the Firehose could not be built.
    #[error("cannot set up TLS for the Firehose: {0}")]
    FirehoseTls(#[source] rustls::Error),
    /// A remote-write endpoint's HTTP client could not be built.
    #[error("cannot set up the remote-write client: {0}")]
    RemoteWriteClient(#[source] reqwest::Error),
    /// The RLP gateway's HTTP client could not be built.
    #[error("cannot set up the RLP gateway's HTTP client")]
    GatewayClient(#[source] reqwest::Error),
    /// A connection's thread could not be started.
    #[error("cannot start a connection's thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A flag is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl StartError {
    /// Whether a flag is at fault (exit code 2) rather than the environment.
    pub fn is_config(&self) -> bool {
        matches!(self, StartError::Config(_))
    }
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
    supervisor: JoinHandle<Result<(), RunError>>,
}

/// The tasks the exporter cannot do without, by name.
#[derive(Debug, Default)]
struct Tasks {
    set: JoinSet<Result<(), SourceError>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Tasks {
    fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: std::future::Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// The next task to end, with its name, and why it ended: its result,
    /// or the text of its panic.
    async fn next(&mut self) -> Option<(&'static str, Result<Result<(), SourceError>, String>)> {
        let (id, ended) = match self.set.join_next_with_id().await? {
            Ok((id, result)) => (id, Ok(result)),
            Err(error) if error.is_cancelled() => (error.id(), Ok(Ok(()))),
            Err(error) => (error.id(), Err(panic_text(error))),
        };
        Some((self.names.get(&id).copied().unwrap_or("a task"), ended))
    }
}

impl Exporter {
    /// Binds the listener and starts every task.
    pub async fn start(config: ExporterConfig) -> Result<Self, StartError> {
        let telemetry = Telemetry::new();
        let store = Arc::new(
            SeriesStore::new(config.expiration, telemetry.clone())
                .with_max_series(config.max_series)
                .with_limits(config.series_limits),
        );
        let (states, state_rx) = StreamStates::new(config.source.connections);
        let listener = TcpListener::bind(config.listen_address)
            .await
            .map_err(|error| StartError::Listen {
                address: config.listen_address,
                error,
            })?;
        let address = listener.local_addr().map_err(StartError::LocalAddress)?;

        let tokens = match &config.source.uaa {
            Some(uaa) if config.source.endpoint.needs_token() => Some(Arc::new(
                TokenSource::new(uaa, config.source.skip_ssl_verify, telemetry.clone())
                    .map_err(StartError::Uaa)?,
            )),
            _ => None,
        };
        let token_source = || {
            tokens.clone().ok_or_else(|| {
                StartError::Config(ConfigError::new(
                    "--uaa.url",
                    "required (or FIREHOSE_EXPORTER_UAA_URL)",
                ))
            })
        };
        let native = NativeScheme::new(config.environment.clone())
            .with_drop_tags(config.drop_tags.clone())
            .with_http_buckets(&config.http_buckets);
        let mut ingest = Ingest::new(
            config.naming.scheme(native),
            store.clone(),
            telemetry.clone(),
        )
        .with_filters(config.filters.clone());
        let shutdown = CancellationToken::new();
        let remote_write_metrics = RemoteWriteMetrics::default();
        let mut forwarders = Vec::new();
        if let Some(forward) = &config.forwarding {
            let endpoints: Vec<String> = forward.endpoints.iter().map(|e| e.label()).collect();
            let (forwarding, tasks) = Forwarding::start(
                forward.clone(),
                store.clone(),
                &remote_write_metrics,
                shutdown.clone(),
            )
            .map_err(StartError::RemoteWriteClient)?;
            tracing::info!(
                endpoints = %endpoints.join(","),
                shard = %format!("{}={}", forward.shard.name, forward.shard.value),
                interval = ?forward.interval,
                "remote-write on"
            );
            ingest = ingest.with_forwarding(forwarding);
            forwarders = tasks;
        }
        // One connection, queue and decoding task per --doppler.connections.
        let mut connections = Vec::with_capacity(config.source.connections);
        for index in 0..config.source.connections {
            let (frames, frames_rx) = FrameSender::channel(
                QUEUE_BATCHES,
                QUEUE_BYTES.max(config.source.max_frame_size.saturating_mul(4)),
                telemetry.clone(),
            );
            let (retry, state) = (config.source.retry(), states.reporter(index));
            let source = match &config.source.endpoint {
                Endpoint::Firehose(url) => {
                    let transport = FirehoseSource::new(
                        url,
                        &config.source,
                        token_source()?,
                        telemetry.clone(),
                    )
                    .map_err(StartError::FirehoseTls)?;
                    let supervisor =
                        Supervisor::new(transport, retry, frames, telemetry.clone(), state);
                    supervisor.with_index(index).run(shutdown.clone()).boxed()
                }
                Endpoint::Gateway(url) => {
                    let transport =
                        GatewaySource::new(url.clone(), token_source()?, &config.source)
                            .map_err(StartError::GatewayClient)?;
                    let supervisor =
                        Supervisor::new(transport, retry, frames, telemetry.clone(), state);
                    supervisor.with_index(index).run(shutdown.clone()).boxed()
                }
                Endpoint::Rlp(rlp) => {
                    let transport = RlpSource::new(
                        rlp,
                        config.source.skip_ssl_verify,
                        config.source.idle_timeout,
                        config.source.max_frame_size,
                    )?;
                    let supervisor =
                        Supervisor::new(transport, retry, frames, telemetry.clone(), state);
                    supervisor.with_index(index).run(shutdown.clone()).boxed()
                }
            };
            connections.push((source, ingest.clone(), frames_rx));
        }

        let (health, health_rx) = watch::channel(None);
        let state = Arc::new(AppState {
            exposition: exposition(&config, &store, &telemetry, &remote_write_metrics),
            store: store.clone(),
            stream: state_rx.clone(),
            source: match config.source.endpoint {
                Endpoint::Firehose(_) => "Firehose",
                Endpoint::Gateway(_) => "RLP gateway",
                Endpoint::Rlp(_) => "RLP",
            },
            telemetry_path: config.telemetry_path.clone(),
            openmetrics: config.openmetrics,
            scrapes: Default::default(),
            failed: health_rx,
        });
        // Every task here runs until shutdown: one that ends before, or
        // panics, stops the exporter with an error (see `supervise`).
        let mut tasks = Tasks::default();
        let source_name = match config.source.endpoint {
            Endpoint::Firehose(_) => "the Firehose source",
            Endpoint::Gateway(_) => "the RLP gateway source",
            Endpoint::Rlp(_) => "the RLP source",
        };
        for (index, (source, ingest, frames_rx)) in connections.into_iter().enumerate() {
            // Reading and decoding a connection on one thread keeps each
            // batch in the cache of the core that read it.
            let pinned =
                Pinned::start(format!("connection-{index}")).map_err(StartError::Thread)?;
            let source = pinned.spawn(source);
            // Ingestion ends when the source has: the source's end, not
            // ingestion's, is what the supervisor must hear of first.
            let source_ended = CancellationToken::new();
            let ended = source_ended.clone().drop_guard();
            tasks.spawn(source_name, async move {
                let _ended = ended;
                source.await.unwrap_or(Ok(()))
            });
            let decoding = pinned.spawn(ingest.run(frames_rx));
            tasks.spawn("ingestion", async move {
                decoding.await;
                source_ended.cancelled().await;
                Ok(())
            });
        }
        for forwarder in forwarders {
            // Each ends at shutdown, once what it holds is sent.
            tasks.spawn("remote-write", async move {
                let _ = forwarder.await;
                Ok(())
            });
        }
        let (sweeping, sweeper_stop) = (store.clone(), shutdown.clone());
        tasks.spawn("the expiry sweeper", async move {
            tokio::select! {
                _ = sweeper_stop.cancelled() => {}
                _ = sweeping.run_sweeper() => {}
            }
            Ok(())
        });
        let (http_state, web, http_stop) = (state.clone(), config.web.clone(), shutdown.clone());
        let open_files = listener::open_files_limit();
        let limits = config.http_limits.within_open_files(open_files);
        if limits.max_connections < config.http_limits.max_connections {
            tracing::info!(
                open_files,
                max_connections = limits.max_connections,
                "--web.max-connections lowered to fit the limit of open files"
            );
        }
        let http_telemetry = telemetry.clone();
        tasks.spawn("the HTTP server", async move {
            let router = router::router(http_state, web.auth);
            listener::serve(listener, web.tls, router, limits, http_telemetry, http_stop).await;
            Ok(())
        });
        #[cfg(debug_assertions)]
        if let Ok(task) = std::env::var("CF_FIREHOSE_EXPORTER_TEST_PANIC") {
            // Debug builds only: tests of the binary check that a panicking
            // task ends the process.
            tasks.spawn("a test task", async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                panic!("injected panic in {task}");
            });
        }
        let supervisor = tokio::spawn(supervise(tasks, shutdown.clone(), health));
        tracing::info!(
            address = %address,
            tls = config.web.tls.is_some(),
            basic_auth = config.web.auth.is_some(),
            path = %config.telemetry_path,
            source = %config.source.endpoint,
            connections = config.source.connections,
            max_http_connections = limits.max_connections,
            "serving metrics"
        );
        Ok(Self {
            address,
            store,
            telemetry,
            stream: state_rx,
            http: state,
            shutdown,
            supervisor,
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

    /// Runs until the shutdown token is cancelled, the source gives up or a
    /// task fails, then closes the websocket with 1000 and stops serving.
    /// Tasks still running after a few seconds are abandoned.
    pub async fn wait(self) -> Result<(), RunError> {
        let result = match self.supervisor.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Task {
                task: "supervisor",
                problem: e.to_string(),
            }),
        };
        tracing::info!("stopped");
        result
    }

    /// Stops now.
    pub async fn stop(self) -> Result<(), RunError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// What a scrape writes under `config`.
fn exposition(
    config: &ExporterConfig,
    store: &Arc<SeriesStore>,
    telemetry: &Telemetry,
    remote_write: &RemoteWriteMetrics,
) -> Exposition {
    let mut exposition = Exposition::new(store.clone(), telemetry.clone());
    if let Naming::Compat { namespace, .. } = &config.naming {
        exposition = exposition.with_compat(CompatSelf::new(
            namespace,
            config.environment.as_deref(),
            config.expiration,
        ));
    }
    if config.forwarding.is_some() {
        exposition = exposition.with_remote_write(remote_write);
    }
    if !config.expose_series {
        exposition = exposition.without_series();
    }
    exposition
}

/// Watches the exporter's tasks until shutdown, then gives them
/// [`STOP_TIMEOUT`] to finish. A task that ends before shutdown, or panics,
/// marks the exporter unhealthy and stops it with an error, so that the
/// process exits non-zero and its supervisor restarts it rather than leave
/// it half alive.
async fn supervise(
    mut tasks: Tasks,
    shutdown: CancellationToken,
    health: watch::Sender<Option<String>>,
) -> Result<(), RunError> {
    let mut result = Ok(());
    let mut fail = |error: RunError| {
        if result.is_ok() {
            tracing::error!(error = %error, "stopping");
            health.send_replace(Some(error.to_string()));
            result = Err(error);
        }
        shutdown.cancel();
    };
    let orderly = async {
        while let Some((task, ended)) = tasks.next().await {
            match ended {
                Ok(Err(error)) => fail(RunError::Source(error)),
                // Tasks end by themselves once shutdown is asked for.
                Ok(Ok(())) if shutdown.is_cancelled() => {}
                Ok(Ok(())) => fail(RunError::Task {
                    task,
                    problem: "ended before shutdown".into(),
                }),
                Err(problem) => fail(RunError::Task { task, problem }),
            }
        }
    };
    // Until shutdown, wait as long as it takes; after, only so long.
    tokio::select! {
        _ = orderly => {}
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(STOP_TIMEOUT).await;
        } => {
            tracing::warn!("stopping without waiting any longer for open connections");
        }
    }
    tasks.set.abort_all();
    result
}

fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => format!("panicked: {}", crate::logging::panic_message(&*payload)),
        Err(error) => error.to_string(),
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
    /// A task the exporter needs ended or panicked.
    #[error("{task} {problem}")]
    Task {
        /// Which task.
        task: &'static str,
        /// What happened to it.
        problem: String,
    },
}

/// Runs the exporter until `shutdown` is cancelled or its source gives up.
pub async fn run(config: ExporterConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let exporter = Exporter::start(config).await?;
    let token = exporter.shutdown_token();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        token.cancel();
    });
    exporter.wait().await
}
