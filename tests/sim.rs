//! The simulated Traffic Controller behaves as the real one does at its
//! edges: 401 with the real bodies, pings, 1008 for a client that stops
//! reading, and the split of a subscription among its connections.

use std::time::Duration;

use bytes::Bytes;
use cf_firehose_exporter::sim::traffic_controller::{FrameKind, KEEPALIVE_REASON, TcSettings};
use cf_firehose_exporter::sim::{Foundation, SimClient};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};

async fn foundation(tc: TcSettings) -> Foundation {
    let any = "127.0.0.1:0".parse().unwrap();
    Foundation::start(any, any, SimClient::default(), tc)
        .await
        .unwrap()
}

async fn token(f: &Foundation) -> String {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth/token", f.uaa_url()))
        .basic_auth(&f.client.id, Some(f.client.secret.expose()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["token_type"], "bearer");
    assert_eq!(response["scope"], "doppler.firehose uaa.none");
    response["access_token"].as_str().unwrap().to_owned()
}

async fn connect(
    f: &Foundation,
    id: &str,
    authorization: Option<&str>,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Error,
> {
    let mut request = format!("{}/firehose/{id}?filter-type=metrics", f.doppler_url())
        .into_client_request()
        .unwrap();
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert("authorization", value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

fn refusal(result: Result<impl Sized, Error>) -> (u16, String) {
    match result {
        Err(Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("expected an HTTP refusal, got a connection"),
    }
}

#[tokio::test]
async fn handshakes_without_a_valid_lower_case_bearer_token_get_401() {
    let f = foundation(TcSettings::default()).await;
    let token = token(&f).await;
    assert_eq!(
        refusal(connect(&f, "p", None).await),
        (
            401,
            "You are not authorized. authorization not provided".into()
        )
    );
    assert_eq!(
        refusal(connect(&f, "p", Some(&format!("Bearer {token}"))).await),
        (401, "You are not authorized. invalid authorization".into())
    );
    assert_eq!(
        refusal(connect(&f, "p", Some("bearer forged")).await).0,
        401
    );
    assert!(
        connect(&f, "p", Some(&format!("bearer {token}")))
            .await
            .is_ok()
    );
    assert_eq!(f.traffic_controller.refused(), 3);
    assert_eq!(f.traffic_controller.accepted(), 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1008() {
    let tc = TcSettings {
        ping_interval: Duration::from_millis(20),
        pong_timeout: Duration::from_millis(100),
    };
    let f = foundation(tc).await;
    let token = token(&f).await;
    let mut socket = connect(&f, "p", Some(&format!("bearer {token}")))
        .await
        .unwrap();
    assert!(
        f.traffic_controller
            .wait_for_connections(1, Duration::from_secs(5))
            .await
    );
    // Not reading means not answering the first ping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut close = None;
    while let Some(Ok(message)) = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
    {
        if let Message::Close(frame) = message {
            close = frame;
            break;
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), KEEPALIVE_REASON);
}

#[tokio::test]
async fn connections_sharing_an_id_split_the_stream_and_other_ids_get_all() {
    let f = foundation(TcSettings::default()).await;
    let bearer = format!("bearer {}", token(&f).await);
    let mut shard_a = connect(&f, "shared", Some(&bearer)).await.unwrap();
    let mut shard_b = connect(&f, "shared", Some(&bearer)).await.unwrap();
    let mut other = connect(&f, "other", Some(&bearer)).await.unwrap();
    assert!(
        f.traffic_controller
            .wait_for_connections(3, Duration::from_secs(5))
            .await
    );
    for i in 0..200u32 {
        let delivered = f
            .traffic_controller
            .publish(Bytes::from(i.to_be_bytes().to_vec()), FrameKind::Metric)
            .await;
        assert_eq!(delivered, 2, "one per subscription id");
    }
    // Logs are not sent to filter-type=metrics subscriptions.
    assert_eq!(
        f.traffic_controller
            .publish(Bytes::from_static(b"log"), FrameKind::Log)
            .await,
        0
    );
    async fn count(socket: &mut (impl StreamExt<Item = Result<Message, Error>> + Unpin)) -> usize {
        let mut n = 0;
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(200), socket.next()).await
        {
            n += usize::from(matches!(message, Message::Binary(_)));
        }
        n
    }
    let (a, b, o) = (
        count(&mut shard_a).await,
        count(&mut shard_b).await,
        count(&mut other).await,
    );
    assert_eq!(a + b, 200);
    assert!(a > 50 && b > 50, "a random split, got {a} and {b}");
    assert_eq!(o, 200);
}
