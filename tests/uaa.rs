//! The UAA token source against the simulated UAA over loopback.

mod common;

use std::time::Duration;

use cf_firehose_exporter::sim::traffic_controller::TcSettings;
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
        UaaError::Credentials("unauthorized: Bad credentials".into())
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
