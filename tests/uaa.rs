//! The UAA token source against the simulated UAA over loopback.

mod common;

use std::time::Duration;

use cf_firehose_exporter::sim::traffic_controller::TcSettings;
use cf_firehose_exporter::sim::uaa::UaaMode;
use cf_firehose_exporter::sim::{Foundation, SimClient};
use cf_firehose_exporter::source::UaaConfig;
use cf_firehose_exporter::source::uaa::{TokenSource, UaaError};
use cf_firehose_exporter::telemetry::Telemetry;

async fn foundation(lifetime: Duration) -> Foundation {
    let any = "127.0.0.1:0".parse().unwrap();
    let client = SimClient {
        token_lifetime: lifetime,
        ..SimClient::default()
    };
    Foundation::start(any, any, client, TcSettings::default())
        .await
        .unwrap()
}

/// The UAA client settings of an exporter reading `f`.
fn uaa_config(f: &Foundation) -> UaaConfig {
    common::config_for(f, Duration::from_secs(60))
        .source
        .uaa
        .expect("the Firehose takes a token")
}

#[tokio::test]
async fn the_token_is_cached_then_renewed_at_eighty_percent_of_its_lifetime() {
    let f = foundation(Duration::from_secs(1)).await;
    let telemetry = Telemetry::new();
    let config = uaa_config(&f);
    let tokens = TokenSource::new(&config, false, telemetry.clone()).unwrap();
    let first = tokens.authorization().await.unwrap();
    assert!(
        first.starts_with("bearer sim-token-"),
        "lower-case bearer: {first}"
    );
    assert_eq!(tokens.authorization().await.unwrap(), first, "cached");
    assert_eq!(f.uaa.tokens_issued(), 1);
    // 80 % of one second.
    tokio::time::sleep(Duration::from_millis(850)).await;
    let second = tokens.authorization().await.unwrap();
    assert_ne!(second, first);
    assert_eq!(f.uaa.tokens_issued(), 2);
    assert_eq!(telemetry.token_requests("success").get(), 2);
}

#[tokio::test]
async fn invalidating_the_rejected_token_fetches_a_new_one_once() {
    let f = foundation(Duration::from_secs(3600)).await;
    let config = uaa_config(&f);
    let tokens = TokenSource::new(&config, false, Telemetry::new()).unwrap();
    let first = tokens.authorization().await.unwrap();
    tokens.invalidate(&first).await;
    let second = tokens.authorization().await.unwrap();
    assert_ne!(first, second);
    // A stale rejection does not throw away the newer token.
    tokens.invalidate(&first).await;
    assert_eq!(tokens.authorization().await.unwrap(), second);
    assert_eq!(f.uaa.tokens_issued(), 2);
}

#[tokio::test]
async fn bad_credentials_are_reported_as_such_without_the_secret() {
    let f = foundation(Duration::from_secs(3600)).await;
    let telemetry = Telemetry::new();
    let mut config = uaa_config(&f);
    config.client_secret = cf_firehose_exporter::secret::Secret::new("wrong-secret-value");
    let tokens = TokenSource::new(&config, false, telemetry.clone()).unwrap();
    let error = tokens.authorization().await.unwrap_err();
    assert_eq!(
        error,
        UaaError::Credentials("HTTP 401: unauthorized: Bad credentials".into())
    );
    assert!(!error.to_string().contains("wrong-secret-value"));
    assert_eq!(f.uaa.refused(), 1);
    assert_eq!(telemetry.token_requests("credentials").get(), 1);
}

#[tokio::test]
async fn an_unreachable_uaa_is_a_network_error() {
    let f = foundation(Duration::from_secs(3600)).await;
    let mut config = uaa_config(&f);
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.token_url = format!("http://{closed}/oauth/token").parse().unwrap();
    let tokens = TokenSource::new(&config, false, Telemetry::new()).unwrap();
    assert!(matches!(
        tokens.authorization().await,
        Err(UaaError::Unreachable(_))
    ));
}

#[tokio::test]
async fn uaa_failures_are_sorted_and_a_healed_uaa_issues_again() {
    let f = foundation(Duration::from_secs(3600)).await;
    let telemetry = Telemetry::new();
    let mut config = uaa_config(&f);
    config.timeout = Duration::from_millis(300);
    let tokens = TokenSource::new(&config, false, telemetry.clone()).unwrap();

    f.uaa.set_mode(UaaMode::ServerError);
    let error = tokens.authorization().await.unwrap_err();
    assert_eq!(
        error,
        UaaError::BadResponse("HTTP 500: server_error: Internal Server Error".into()),
        "a 500 is not a credentials problem"
    );

    f.uaa.set_mode(UaaMode::Down);
    assert!(
        matches!(tokens.authorization().await, Err(UaaError::Unreachable(_))),
        "reset connections"
    );

    f.uaa.set_mode(UaaMode::Slow(Duration::from_secs(2)));
    let error = tokens.authorization().await.unwrap_err();
    assert!(
        matches!(&error, UaaError::Unreachable(text) if text.contains("timed out")),
        "{error:?}"
    );

    f.uaa.set_mode(UaaMode::BadCredentials);
    assert_eq!(
        tokens.authorization().await.unwrap_err(),
        UaaError::Credentials("HTTP 401: unauthorized: Bad credentials".into())
    );

    f.uaa.set_mode(UaaMode::Normal);
    assert!(tokens.authorization().await.is_ok());
    assert_eq!(telemetry.token_requests("error").get(), 3);
    assert_eq!(telemetry.token_requests("credentials").get(), 1);
    assert_eq!(telemetry.token_requests("success").get(), 1);
}

/// Log lines of this thread's tasks, at every level, as the exporter writes them.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("cf_firehose_exporter=trace")
            .with_writer(move || writer.clone())
            .event_format(cf_firehose_exporter::logging::Logfmt)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// An exporter against a UAA answering `mode`, after a few token requests:
/// its logs, landing page and readiness answer.
async fn exporter_against(mode: UaaMode) -> (String, String, String) {
    let logs = Logs::default();
    let _capture = logs.capture();
    let f = foundation(Duration::from_secs(3600)).await;
    f.uaa.set_mode(mode);
    let mut config = common::config_for(&f, Duration::from_secs(60));
    config.source.min_retry_delay = Duration::from_millis(200);
    config.source.max_retry_delay = Duration::from_millis(400);
    let exporter = cf_firehose_exporter::app::Exporter::start(config)
        .await
        .unwrap();
    let base = format!("http://{}", exporter.address);
    // Both pages while the source waits to try again, saying why.
    let page = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            common::eventually(path, || async {
                let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
                text.contains("reconnecting after").then_some(text)
            })
            .await
        }
    };
    let ready = page("/-/ready").await;
    let landing = page("/").await;
    assert!(exporter.telemetry.token_requests("success").get() == 0);
    exporter.stop().await.unwrap();
    (logs.text(), landing, ready)
}

#[tokio::test]
async fn the_token_of_a_malformed_response_appears_in_no_log_line_landing_page_or_readiness() {
    for (body, problem) in [
        (
            r#"{"access_token":"tok-Zm9vYmFyc2VjcmV0","token_type":"bearer","expires_in":"3600"}"#,
            "expires_in is a string, not a number",
        ),
        (
            r#"{"access_token":"tok-Zm9vYmFyc2VjcmV0","token_type":"bearer","expires_in":-1}"#,
            "expires_in is negative",
        ),
        (
            r#"{"access_token":"tok-Zm9vYmFyc2VjcmV0","token_type":"bearer","expires_in":1.5}"#,
            "expires_in is not a whole number of seconds",
        ),
        (
            r#"{"access_token":"tok-Zm9vYmFyc2VjcmV0","expires_in":3600}"#,
            "no token_type",
        ),
    ] {
        let (logs, landing, ready) = exporter_against(UaaMode::Canned(200, body)).await;
        for (what, text) in [
            ("logs", &logs),
            ("landing page", &landing),
            ("readiness", &ready),
        ] {
            assert!(
                !text.contains("Zm9vYmFyc2VjcmV0"),
                "token in the {what}: {text}"
            );
        }
        assert!(logs.contains(problem), "{logs}");
        assert!(ready.contains(problem), "{ready}");
    }
}

#[tokio::test]
async fn a_uaa_echoing_the_request_headers_leaks_no_credentials() {
    let secret = SimClient::default().secret.expose().to_owned();
    for status in [200, 400, 401, 500] {
        let (logs, landing, ready) = exporter_against(UaaMode::EchoHeaders(status)).await;
        for (what, text) in [
            ("logs", &logs),
            ("landing page", &landing),
            ("readiness", &ready),
        ] {
            assert!(
                !text.contains("Basic "),
                "credentials in the {what}: {text}"
            );
            assert!(!text.contains(&secret), "secret in the {what}: {text}");
        }
        assert!(ready.contains(&format!("HTTP {status}")), "{ready}");
    }
}

#[tokio::test]
async fn a_huge_uaa_answer_is_cut_short() {
    let f = foundation(Duration::from_secs(3600)).await;
    f.uaa.set_mode(UaaMode::Huge(256 << 20));
    let config = uaa_config(&f);
    let tokens = TokenSource::new(&config, false, Telemetry::new()).unwrap();
    let since = std::time::Instant::now();
    let error = tokens.authorization().await.unwrap_err();
    assert_eq!(
        error,
        UaaError::BadResponse("HTTP 200: the answer is larger than 1024 KiB".into())
    );
    // Reading 256 MiB would take far longer than reading the first MiB.
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "{:?}",
        since.elapsed()
    );
}

#[tokio::test]
async fn an_expires_in_that_would_overflow_the_clock_is_clamped() {
    let f = foundation(Duration::from_secs(3600)).await;
    f.uaa.set_mode(UaaMode::Canned(
        200,
        r#"{"access_token":"t","token_type":"bearer","expires_in":18446744073709551615}"#,
    ));
    let config = uaa_config(&f);
    let tokens = TokenSource::new(&config, false, Telemetry::new()).unwrap();
    assert_eq!(&*tokens.authorization().await.unwrap(), "bearer t");
    assert_eq!(
        &*tokens.authorization().await.unwrap(),
        "bearer t",
        "cached"
    );
    assert_eq!(f.uaa.requests(), 1);
}

#[tokio::test]
async fn a_token_the_traffic_controller_refuses_as_too_large_is_dropped_at_once() {
    let f = foundation(Duration::from_secs(3600)).await;
    let big: &'static str = Box::leak(
        format!(
            r#"{{"access_token":"{}","token_type":"bearer","expires_in":3600}}"#,
            "x".repeat(20_000)
        )
        .into_boxed_str(),
    );
    f.uaa.set_mode(UaaMode::Canned(200, big));
    f.traffic_controller.set_max_authorization(8192);
    let mut config = common::config_for(&f, Duration::from_secs(60));
    config.source.min_retry_delay = Duration::from_millis(20);
    config.source.max_retry_delay = Duration::from_millis(50);
    let exporter = cf_firehose_exporter::app::Exporter::start(config)
        .await
        .unwrap();
    common::eventually("a 431", || async {
        (exporter.telemetry.connect_errors("rejected").get() >= 1).then_some(())
    })
    .await;
    // UAA heals: the next attempt asks it again rather than resend the
    // cached one-hour token.
    f.uaa.set_mode(UaaMode::Normal);
    assert!(
        f.traffic_controller
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "never connected with a new token"
    );
    exporter.stop().await.unwrap();
}
