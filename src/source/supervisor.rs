//! The reconnect loop every transport runs under: connect, stream, and on
//! any failure back off and try again, until shutdown or until
//! `--doppler.max-retry-count` attempts in a row have failed. It owns what
//! is the same for every transport: the connection states, backoff, the
//! failure log, the retry cap, one immediate retry with a fresh token after
//! a 401, and the connection metrics. A [`Transport`] only connects and reads.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::slow_consumer;
use super::{FrameSender, StateSender, StreamState};
use crate::source::uaa::UaaError;
use crate::telemetry::Telemetry;

/// A connection that stays up this long counts as a good one even if it
/// delivered nothing (a quiet subscription): backoff starts afresh after it.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// One way of reading envelopes from Loggregator, driven by a [`Supervisor`].
pub trait Transport: Send {
    /// An open connection, as [`Transport::connect`] returns it.
    type Connection: Send;

    /// What the transport is called in logs: "Firehose".
    fn name(&self) -> &'static str;

    /// Where it connects to, for logs.
    fn endpoint(&self) -> &str;

    /// Opens a connection: gets a token (or presents client certificates)
    /// and completes the handshake.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Connection, ConnectError>> + Send;

    /// Reads `connection` until it ends or `shutdown` is cancelled, handing
    /// frames to `frames` in batches. Returns how it ended and how many
    /// frames it read.
    fn stream(
        &mut self,
        connection: Self::Connection,
        frames: &FrameSender,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = (Disconnect, usize)> + Send;

    /// Whether the way a connection ended is a sign of a slow consumer.
    fn slow_consumer(&mut self, _end: &Disconnect) -> bool {
        false
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No token could be had from UAA.
    #[error(transparent)]
    Uaa(#[from] UaaError),
    /// The server rejected the token (HTTP 401).
    #[error("{peer} refused the token (401): {body}")]
    Unauthorized {
        /// Who refused: "Traffic Controller".
        peer: &'static str,
        /// Start of the body, without the token.
        body: String,
    },
    /// The handshake was answered with another HTTP status.
    #[error("{peer} answered the handshake with HTTP {status}: {body:?}")]
    Rejected {
        /// Who answered.
        peer: &'static str,
        /// HTTP status code.
        status: u16,
        /// Start of the body, without the token.
        body: String,
    },
    /// The subscription was answered with a gRPC status other than OK.
    #[error("{peer} refused the subscription with gRPC status {code}: {message:?}")]
    Refused {
        /// Who answered.
        peer: &'static str,
        /// The status code's name: "Unavailable".
        code: String,
        /// The message that came with it.
        message: String,
    },
    /// Network, TLS or protocol failure, or timeout.
    #[error("cannot reach the {peer}: {error}")]
    Unreachable {
        /// Who could not be reached.
        peer: &'static str,
        /// What went wrong.
        error: String,
    },
}

impl ConnectError {
    /// The `reason` label of `connect_errors_total`.
    pub fn reason_label(&self) -> &'static str {
        match self {
            ConnectError::Uaa(UaaError::Credentials(_)) => "uaa_credentials",
            ConnectError::Uaa(_) => "uaa_error",
            ConnectError::Unauthorized { .. } => "unauthorized",
            ConnectError::Rejected { .. } | ConnectError::Refused { .. } => "rejected",
            ConnectError::Unreachable { .. } => "unreachable",
        }
    }
}

/// Why a source stopped for good before shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// `--doppler.max-retry-count` attempts in a row failed.
    #[error(
        "giving up after {attempts} failed attempts in a row (--doppler.max-retry-count); last error: {last_error}"
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// What the last one ran into.
        last_error: String,
    },
}

/// How an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The server sent a close frame with this code.
    Closed {
        /// The websocket close code (1005 when the frame had none).
        code: u16,
        /// The reason the server gave.
        reason: String,
    },
    /// Nothing arrived, not even a ping, for the idle timeout.
    Idle(Duration),
    /// The server sent a frame larger than the limit.
    FrameTooLarge(String),
    /// The connection failed without a close frame.
    Failed(String),
    /// The server ended the stream and asked for a new one (the RLP
    /// Gateway's `closing` event, after its stream timeout).
    Closing(String),
    /// The server ended the stream without a word.
    Ended,
    /// Shutdown was requested, or decoding is gone.
    Stopped,
}

impl Disconnect {
    /// The `reason` label of `reconnects_total`.
    fn reason_label(&self) -> &'static str {
        match self {
            Disconnect::Closed { code: 1000, .. } => "close_normal",
            Disconnect::Closed { code: 1008, .. } => "close_policy_violation",
            Disconnect::Closed { .. } => "close_other",
            Disconnect::Idle(_) => "idle_timeout",
            Disconnect::FrameTooLarge(_) => "frame_too_large",
            Disconnect::Failed(_) => "error",
            Disconnect::Closing(_) => "closing",
            Disconnect::Ended => "ended",
            Disconnect::Stopped => "stopped",
        }
    }

    /// Whether a good connection that ended so is opened again at once,
    /// without backoff: the server ended the stream on purpose.
    fn reconnects_at_once(&self) -> bool {
        matches!(self, Disconnect::Closing(_) | Disconnect::Ended)
    }

    /// One line for the log and the landing page.
    fn describe(&self) -> String {
        match self {
            Disconnect::Closed { code, reason } if reason.is_empty() => {
                format!("closed by the server with code {code}")
            }
            Disconnect::Closed { code, reason } => {
                format!("closed by the server with code {code}: {reason}")
            }
            Disconnect::Idle(after) => format!(
                "no frame and no ping for {} (--doppler.idle-timeout)",
                humantime::format_duration(*after)
            ),
            Disconnect::FrameTooLarge(e) => format!("{e} (--doppler.max-frame-size)"),
            Disconnect::Failed(e) => format!("connection lost: {e}"),
            Disconnect::Closing(why) => format!("the server closed the stream: {why}"),
            Disconnect::Ended => "the server ended the stream".into(),
            Disconnect::Stopped => "stopped".into(),
        }
    }
}

/// Logs repeated connection failures once per change of error and then at
/// 2, 4, 8, ... attempts, not once per attempt.
#[derive(Debug, Default)]
struct FailureLog {
    last: String,
    attempts: u32,
}

impl FailureLog {
    /// Records a failed attempt; true when it deserves a log line.
    fn record(&mut self, error: &str) -> bool {
        self.attempts += 1;
        if error != self.last {
            self.last = error.to_owned();
            return true;
        }
        self.attempts.is_power_of_two()
    }

    fn clear(&mut self) {
        self.last.clear();
        self.attempts = 0;
    }
}

/// When and how often a [`Supervisor`] tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay after a failure (`--doppler.min-retry-delay`).
    pub min_delay: Duration,
    /// Cap of the delay (`--doppler.max-retry-delay`).
    pub max_delay: Duration,
    /// Failed attempts in a row after which to give up
    /// (`--doppler.max-retry-count`); `None`: never.
    pub max_attempts: Option<u32>,
}

/// Keeps one connection of a [`Transport`] open until shutdown.
#[derive(Debug)]
pub struct Supervisor<T> {
    transport: T,
    frames: FrameSender,
    telemetry: Telemetry,
    state: StateSender,
    backoff: Backoff,
    max_retry_count: Option<u32>,
    /// Which of the exporter's connections this is, from 0.
    index: usize,
}

impl<T: Transport> Supervisor<T> {
    /// Runs `transport`, retrying by `retry`, sending frames to `frames`
    /// and reporting into `state`.
    pub fn new(
        transport: T,
        retry: RetryPolicy,
        frames: FrameSender,
        telemetry: Telemetry,
        state: StateSender,
    ) -> Self {
        Self {
            transport,
            frames,
            telemetry,
            state,
            backoff: Backoff::new(retry.min_delay, retry.max_delay),
            max_retry_count: retry.max_attempts,
            index: 0,
        }
    }

    /// Numbers this connection among several sharing the subscription.
    pub fn with_index(mut self, index: usize) -> Self {
        self.index = index;
        self
    }

    /// Connects, streams and reconnects until `shutdown` is cancelled, or
    /// until `--doppler.max-retry-count` attempts in a row have failed.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut failures = FailureLog::default();
        let mut retry_unauthorized = true;
        let name = self.transport.name();
        let result = loop {
            if shutdown.is_cancelled() {
                break Ok(());
            }
            self.state.send_replace(StreamState::Connecting);
            let attempt = tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                attempt = self.transport.connect() => attempt,
            };
            if let Err(error) = &attempt {
                self.telemetry.connect_errors(error.reason_label()).inc();
            }
            let (failure, loud) = match attempt {
                Ok(connection) => {
                    let (end, delivered) = self.stream(connection, &shutdown).await;
                    if end == Disconnect::Stopped {
                        break Ok(());
                    }
                    let text = end.describe();
                    if delivered {
                        // A good connection: start counting failures afresh.
                        retry_unauthorized = true;
                        failures.clear();
                        self.backoff.reset();
                        if end.reconnects_at_once() {
                            // Ended on purpose: a new stream at once.
                            self.telemetry.reconnects(end.reason_label()).inc();
                            tracing::info!(reason = %text, "{name} stream ended; reconnecting");
                            continue;
                        }
                        self.disconnected(&end, true);
                        (text, true)
                    } else {
                        // Accepted, then dropped before any data: a failed
                        // attempt like any other, so backoff keeps growing
                        // and --doppler.max-retry-count counts it.
                        let loud = failures.record(&text);
                        self.disconnected(&end, loud);
                        if let Some(error) = self.give_up(&failures, &text) {
                            break Err(error);
                        }
                        (text, loud)
                    }
                }
                Err(ConnectError::Unauthorized { peer, body }) if retry_unauthorized => {
                    // The token was revoked or expired early: fetch a new one
                    // and try again at once, but only once in a row.
                    retry_unauthorized = false;
                    tracing::info!(%body, "{peer} refused the token; fetching a new one");
                    continue;
                }
                Err(error) => {
                    let text = error.to_string();
                    let loud = failures.record(&text);
                    if let Some(error) = self.give_up(&failures, &text) {
                        break Err(error);
                    }
                    if loud {
                        let attempts = failures.attempts;
                        match &error {
                            ConnectError::Uaa(UaaError::Credentials(_)) => tracing::error!(
                                error = %text,
                                attempts,
                                "UAA refused the client: check --uaa.client-id and --uaa.client-secret"
                            ),
                            _ => {
                                tracing::warn!(error = %text, attempts, "cannot connect to the {name}")
                            }
                        }
                    }
                    (text, loud)
                }
            };
            let delay = self.backoff.next_delay();
            let shown = humantime::format_duration(Duration::from_millis(delay.as_millis() as u64));
            if loud {
                tracing::info!(delay = %shown, "backing off before reconnecting");
            } else {
                tracing::debug!(delay = %shown, error = %failure, "backing off before reconnecting");
            }
            self.state.send_replace(StreamState::BackingOff(failure));
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        };
        self.state.send_replace(StreamState::Stopped);
        result
    }

    /// Streams an open connection, counted among the open ones while it
    /// lasts. Also says whether it was a good one: it delivered a frame or
    /// stayed up for [`STABLE_AFTER`].
    async fn stream(
        &mut self,
        connection: T::Connection,
        shutdown: &CancellationToken,
    ) -> (Disconnect, bool) {
        let opened = tokio::time::Instant::now();
        tracing::info!(
            url = %self.transport.endpoint(),
            connection = self.index,
            "connected to the {}",
            self.transport.name()
        );
        self.telemetry.connections.inc();
        self.telemetry.up.set(1);
        self.state.send_replace(StreamState::Streaming);
        let (end, frames) = self
            .transport
            .stream(connection, &self.frames, shutdown)
            .await;
        self.telemetry.connections.dec();
        self.telemetry
            .up
            .set(i64::from(self.telemetry.connections.get() > 0));
        (end, frames > 0 || opened.elapsed() >= STABLE_AFTER)
    }

    /// The error to stop with once `--doppler.max-retry-count` attempts in a
    /// row have failed, the last with `text`.
    fn give_up(&self, failures: &FailureLog, text: &str) -> Option<SourceError> {
        let max = self
            .max_retry_count
            .filter(|max| failures.attempts >= *max)?;
        tracing::error!(attempts = max, error = %text, "giving up");
        Some(SourceError::RetriesExhausted {
            attempts: max,
            last_error: text.to_owned(),
        })
    }

    /// Counts the end of an established connection, and logs it if `loud`.
    fn disconnected(&mut self, end: &Disconnect, loud: bool) {
        self.telemetry.reconnects(end.reason_label()).inc();
        if let Disconnect::FrameTooLarge(_) = end {
            self.telemetry.envelopes_dropped("frame_too_large").inc();
        }
        let slow = self.transport.slow_consumer(end);
        let name = self.transport.name();
        match end {
            _ if !loud => {
                tracing::debug!(error = %end.describe(), "{name} connection lost again")
            }
            Disconnect::Closed { code, reason } => {
                tracing::warn!(code, reason = %reason, "{name} connection closed by the server")
            }
            other => tracing::warn!(error = %other.describe(), "{name} connection lost"),
        }
        if slow {
            self.telemetry.slow_consumer_alert();
            tracing::warn!("slow consumer: {}", slow_consumer::ADVICE);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::super::StreamStates;
    use super::*;

    /// What the scripted transport does on its next attempt.
    enum Step {
        Refuse(ConnectError),
        Stream(Disconnect, usize),
    }

    /// A transport that follows a script, then waits forever to connect.
    struct Scripted {
        steps: VecDeque<Step>,
        attempts: Arc<Mutex<Vec<tokio::time::Instant>>>,
    }

    impl Transport for Scripted {
        type Connection = (Disconnect, usize);

        fn name(&self) -> &'static str {
            "scripted"
        }

        fn endpoint(&self) -> &str {
            "test://"
        }

        async fn connect(&mut self) -> Result<Self::Connection, ConnectError> {
            self.attempts
                .lock()
                .unwrap()
                .push(tokio::time::Instant::now());
            match self.steps.pop_front() {
                Some(Step::Refuse(error)) => Err(error),
                Some(Step::Stream(end, frames)) => Ok((end, frames)),
                None => std::future::pending().await,
            }
        }

        async fn stream(
            &mut self,
            connection: Self::Connection,
            _frames: &FrameSender,
            _shutdown: &CancellationToken,
        ) -> (Disconnect, usize) {
            connection
        }
    }

    fn unreachable() -> Step {
        Step::Refuse(ConnectError::Unreachable {
            peer: "server",
            error: "refused".into(),
        })
    }

    fn unauthorized() -> Step {
        Step::Refuse(ConnectError::Unauthorized {
            peer: "server",
            body: String::new(),
        })
    }

    fn failed() -> Disconnect {
        Disconnect::Failed("reset".into())
    }

    struct Run {
        result: Result<(), SourceError>,
        attempts: Vec<Duration>,
        telemetry: Telemetry,
        state: StreamState,
    }

    /// Runs `steps` with 1 s to 8 s of backoff and at most `max` failures in
    /// a row, on paused time; shutdown comes once the script is done.
    async fn run(steps: Vec<Step>, max: Option<u32>) -> Run {
        let telemetry = Telemetry::new();
        let (frames, _rx) = FrameSender::channel(4, 1 << 20, telemetry.clone());
        let (states, state) = StreamStates::new(1);
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let script = Scripted {
            steps: steps.into(),
            attempts: attempts.clone(),
        };
        let retry = RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_attempts: max,
        };
        let supervisor =
            Supervisor::new(script, retry, frames, telemetry.clone(), states.reporter(0));
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(supervisor.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        shutdown.cancel();
        let result = task.await.unwrap();
        let attempts = attempts
            .lock()
            .unwrap()
            .iter()
            .map(|t| *t - start)
            .collect();
        let state = state.borrow().clone();
        Run {
            result,
            attempts,
            telemetry,
            state,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_retried_at_once_but_only_once_in_a_row() {
        let run = run(vec![unauthorized(), unauthorized(), unreachable()], None).await;
        assert_eq!(run.result, Ok(()));
        // 0: refused; at once a fresh try, refused again; then backoff.
        assert_eq!(run.attempts.len(), 4, "{:?}", run.attempts);
        assert_eq!(run.attempts[0], run.attempts[1]);
        assert!(run.attempts[2] >= run.attempts[1] + Duration::from_millis(500));
        assert!(
            run.attempts[3] > run.attempts[2],
            "backoff after each failure"
        );
        assert_eq!(run.telemetry.connect_errors("unauthorized").get(), 2);
        assert_eq!(run.telemetry.connect_errors("unreachable").get(), 1);
        assert_eq!(run.state, StreamState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_retry_count_and_says_why() {
        let run = run(vec![unreachable(), unreachable(), unreachable()], Some(3)).await;
        assert_eq!(
            run.result,
            Err(SourceError::RetriesExhausted {
                attempts: 3,
                last_error: "cannot reach the server: refused".into()
            })
        );
        assert_eq!(run.attempts.len(), 3);
        assert_eq!(run.state, StreamState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_delivers_nothing_is_a_failed_attempt() {
        let steps = vec![
            Step::Stream(failed(), 0),
            Step::Stream(failed(), 0),
            unreachable(),
        ];
        let run = run(steps, Some(3)).await;
        assert!(run.result.is_err(), "{:?}", run.result);
        assert_eq!(run.telemetry.reconnects("error").get(), 2);
        assert_eq!(run.telemetry.connections.get(), 0);
        assert_eq!(run.telemetry.up.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_delivers_starts_the_count_and_the_backoff_afresh() {
        let steps = vec![
            unreachable(),
            unreachable(),
            Step::Stream(failed(), 5),
            unreachable(),
            unreachable(),
        ];
        let run = run(steps, Some(3)).await;
        assert_eq!(
            run.result,
            Ok(()),
            "the count was reset by the good connection"
        );
        assert_eq!(run.attempts.len(), 6);
        // After the good connection the delay is back to the first one's.
        let before = run.attempts[2] - run.attempts[1];
        let after = run.attempts[3] - run.attempts[2];
        assert!(before >= Duration::from_secs(1), "{before:?}");
        assert!(after <= Duration::from_secs(1), "{after:?}");
        assert_eq!(run.telemetry.reconnects("error").get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_the_server_ends_after_data_is_opened_again_at_once() {
        let steps = vec![
            Step::Stream(Disconnect::Closing("stream timeout".into()), 4),
            Step::Stream(Disconnect::Ended, 2),
            // Ended before any data: a failed attempt, backed off.
            Step::Stream(Disconnect::Ended, 0),
            unreachable(),
        ];
        let run = run(steps, None).await;
        assert_eq!(run.attempts.len(), 5, "{:?}", run.attempts);
        assert_eq!(run.attempts[0], run.attempts[1], "no backoff after closing");
        assert_eq!(run.attempts[1], run.attempts[2], "no backoff after an end");
        assert!(run.attempts[3] >= run.attempts[2] + Duration::from_millis(500));
        assert_eq!(run.telemetry.reconnects("closing").get(), 1);
        assert_eq!(run.telemetry.reconnects("ended").get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_too_large_is_counted_as_a_dropped_envelope() {
        let steps = vec![Step::Stream(Disconnect::FrameTooLarge("big".into()), 3)];
        let run = run(steps, None).await;
        assert_eq!(run.telemetry.reconnects("frame_too_large").get(), 1);
        assert_eq!(run.telemetry.envelopes_dropped("frame_too_large").get(), 1);
    }
}
