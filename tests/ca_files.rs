//! `--uaa.ca-file` and `--doppler.ca-file`: UAA, the Traffic Controller and
//! the RLP gateway behind TLS with certificates from a private CA, as a
//! BOSH-deployed foundation has them. With the CA files the exporter
//! streams; without them it refuses the certificates and says so.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cf_firehose_exporter::app::Exporter;
use cf_firehose_exporter::cli::SourceArgs;
use cf_firehose_exporter::sim::Foundation;
use cf_firehose_exporter::sim::traffic_controller::FrameKind;
use common::pki::Pki;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A TLS front for `target`: each connection is accepted with the server
/// certificate of `pki` and relayed in plain text to `target`.
async fn tls_front(pki: &Pki, target: SocketAddr) -> SocketAddr {
    let chain = CertificateDer::pem_file_iter(pki.path("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    address
}

/// The host and port of a URL of the simulator.
fn address_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
        .parse()
        .unwrap()
}

/// Source flags for UAA and `doppler` behind TLS fronts.
async fn behind_tls(foundation: &Foundation, pki: &Pki, gateway: bool) -> SourceArgs {
    let uaa = tls_front(pki, address_of(&foundation.uaa_url())).await;
    let (doppler, target) = if gateway {
        let front = tls_front(pki, address_of(&foundation.gateway_url())).await;
        (format!("https://{front}"), None)
    } else {
        let front = tls_front(pki, address_of(&foundation.doppler_url())).await;
        (String::new(), Some(format!("wss://{front}")))
    };
    let mut args = SourceArgs::new(
        format!("https://{uaa}"),
        foundation.client.id.clone(),
        foundation.client.secret.clone(),
        target.unwrap_or_default(),
    );
    if gateway {
        args.doppler_url = None;
        args.logging_url = Some(doppler);
    }
    args.min_retry_delay = Duration::from_millis(50);
    args.max_retry_delay = Duration::from_millis(200);
    args
}

async fn start(foundation: &Foundation, args: SourceArgs) -> Exporter {
    let mut config = common::config_for(foundation, Duration::from_secs(600));
    config.source = args.resolve().expect("valid source settings");
    Exporter::start(config).await.expect("exporter starts")
}

#[tokio::test]
async fn the_firehose_and_uaa_behind_a_private_ca_stream_with_the_ca_files() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let pki = Pki::new("ca-files-firehose");
    let mut args = behind_tls(&foundation, &pki, false).await;
    args.uaa_ca_file = Some(pki.path("ca.pem"));
    args.doppler_ca_file = Some(pki.path("ca.pem"));
    let exporter = start(&foundation, args).await;
    assert!(
        foundation
            .traffic_controller
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter connected through TLS"
    );
    let frame = common::hex(common::COUNTER_EVENT);
    let delivered = foundation
        .traffic_controller
        .publish(frame, FrameKind::Metric)
        .await;
    assert_eq!(delivered, 1);
    let body = common::eventually("the counter served", || async {
        let body = common::scrape(&exporter).await;
        // Not the exporter's own token_requests_total: the relayed counter.
        common::total(&body, "requests").is_some().then_some(body)
    })
    .await;
    assert_eq!(common::total(&body, "requests"), Some(1234.0));
}

#[tokio::test]
async fn the_gateway_behind_a_private_ca_streams_with_the_ca_files() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let pki = Pki::new("ca-files-gateway");
    let mut args = behind_tls(&foundation, &pki, true).await;
    args.uaa_ca_file = Some(pki.path("ca.pem"));
    args.doppler_ca_file = Some(pki.path("ca.pem"));
    let exporter = start(&foundation, args).await;
    assert!(
        foundation
            .gateway
            .wait_for_connections(1, common::PATIENCE)
            .await,
        "the exporter read the gateway through TLS"
    );
    assert_eq!(
        foundation
            .gateway
            .publish(&[common::v2_counter("behind_tls", 5)])
            .await,
        1
    );
    let body = common::eventually("the counter served", || async {
        let body = common::scrape(&exporter).await;
        body.contains("behind_tls_total{").then_some(body)
    })
    .await;
    assert_eq!(common::total(&body, "behind_tls"), Some(5.0));
}

#[tokio::test]
async fn without_the_ca_files_the_certificates_are_refused() {
    let foundation = Foundation::start_local()
        .await
        .expect("simulated foundation");
    let pki = Pki::new("ca-files-refused");
    let mut args = behind_tls(&foundation, &pki, false).await;
    // UAA's CA only: the token comes, the Traffic Controller is refused.
    args.uaa_ca_file = Some(pki.path("ca.pem"));
    let exporter = start(&foundation, args.clone()).await;
    let reason = [("reason", "unreachable")];
    let (body, parsed) = common::eventually("a refused connection counted", || async {
        let body = common::scrape(&exporter).await;
        let parsed = common::exposition::parse(&body).unwrap();
        let refused = parsed.value("cf_firehose_exporter_connect_errors_total", &reason);
        (refused >= Some(2.0)).then_some((body, parsed))
    })
    .await;
    let success = [("result", "success")];
    let tokens = parsed.value("cf_firehose_exporter_token_requests_total", &success);
    assert!(tokens >= Some(1.0), "{body}");
    assert!(body.contains("cf_firehose_exporter_up 0\n"), "{body}");
    assert_eq!(foundation.traffic_controller.connections(), 0);

    // Neither: UAA's certificate is refused first.
    args.uaa_ca_file = None;
    let exporter = start(&foundation, args.clone()).await;
    let parsed = common::eventually("a failed token request counted", || async {
        let body = common::scrape(&exporter).await;
        let parsed = common::exposition::parse(&body).unwrap();
        let failed = parsed
            .find("cf_firehose_exporter_token_requests_total", &[])
            .into_iter()
            .any(|s| s.labels.get("result").is_some_and(|r| r != "success") && s.value >= 1.0);
        failed.then_some(parsed)
    })
    .await;
    assert!(
        parsed
            .find(
                "cf_firehose_exporter_token_requests_total",
                &[("result", "success")]
            )
            .iter()
            .all(|s| s.value == 0.0)
    );

    // A CA file that holds no certificate stops start-up naming the flag.
    let empty = pki.write("empty.pem", "not a certificate\n");
    args.uaa_ca_file = Some(empty.clone());
    let error = args.resolve().unwrap_err().to_string();
    assert!(error.starts_with("--uaa.ca-file: "), "{error}");
    assert!(error.contains("no PEM certificate"), "{error}");
    args.uaa_ca_file = None;
    args.doppler_ca_file = Some(empty);
    let error = args.resolve().unwrap_err().to_string();
    assert!(error.starts_with("--doppler.ca-file: "), "{error}");
}
