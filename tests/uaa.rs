//! The UAA token source against the simulated UAA over loopback.

mod common;

use std::time::Duration;

use cf_firehose_exporter::sim::traffic_controller::TcSettings;
use cf_firehose_exporter::sim::uaa::UaaMode;
use cf_firehose_exporter::sim::{Foundation, SimClient};
use cf_firehose_exporter::telemetry::Telemetry;
use cf_firehose_exporter::uaa::{TokenSource, UaaError};

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

#[tokio::test]
async fn the_token_is_cached_then_renewed_at_eighty_percent_of_its_lifetime() {
    let f = foundation(Duration::from_secs(1)).await;
    let telemetry = Telemetry::new();
    let config = common::config_for(&f, Duration::from_secs(60)).source;
    let tokens = TokenSource::new(&config, telemetry.clone()).unwrap();
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
    let config = common::config_for(&f, Duration::from_secs(60)).source;
    let tokens = TokenSource::new(&config, Telemetry::new()).unwrap();
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
    let mut config = common::config_for(&f, Duration::from_secs(60)).source;
    config.client_secret = cf_firehose_exporter::config::Secret::new("wrong-secret-value");
    let tokens = TokenSource::new(&config, telemetry.clone()).unwrap();
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
    let mut config = common::config_for(&f, Duration::from_secs(60)).source;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.token_url = format!("http://{closed}/oauth/token").parse().unwrap();
    let tokens = TokenSource::new(&config, Telemetry::new()).unwrap();
    assert!(matches!(
        tokens.authorization().await,
        Err(UaaError::Unreachable(_))
    ));
}

#[tokio::test]
async fn uaa_failures_are_sorted_and_a_healed_uaa_issues_again() {
    let f = foundation(Duration::from_secs(3600)).await;
    let telemetry = Telemetry::new();
    let mut config = common::config_for(&f, Duration::from_secs(60)).source;
    config.uaa_timeout = Duration::from_millis(300);
    let tokens = TokenSource::new(&config, telemetry.clone()).unwrap();

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
