//! The HTTP connections over real sockets: HTTP/2 over TLS as ALPN offers
//! it, the header and idle timeouts, and the cap on connections, which
//! makes room by closing the connection idle the longest.

mod common;

use std::time::{Duration, Instant};

use cf_firehose_exporter::http::listener::Limits;
use cf_firehose_exporter::http::web_config::WebSecurityArgs;
use common::Harness;
use common::pki::Pki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: Limits, web: WebSecurityArgs) -> Harness {
    let web = web.resolve().expect("valid web settings");
    Harness::start_with(Default::default(), Default::default(), |mut c| {
        c.web = web;
        c.http_limits = limits;
        c
    })
    .await
}

fn closed(h: &Harness, reason: &str) -> u64 {
    h.exporter.telemetry.http_connections_closed(reason).get()
}

/// Reads until the server closes the connection, for at most `within`;
/// true when it did close.
async fn closes_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn https_answers_clients_that_offer_http2_in_http2_and_others_in_http1() {
    let pki = Pki::new("h2");
    let h = start(
        Limits::default(),
        WebSecurityArgs {
            tls_cert_file: Some(pki.path("server.pem")),
            tls_key_file: Some(pki.path("server.key")),
            ..Default::default()
        },
    )
    .await;
    let url = format!("https://127.0.0.1:{}/metrics", h.exporter.address.port());
    let ca = reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap();
    let client = |http1_only: bool| {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone());
        let builder = if http1_only {
            builder.http1_only()
        } else {
            builder
        };
        builder.build().unwrap()
    };
    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let response = client(http1_only).get(&url).send().await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let parsed = common::exposition::parse(&body).unwrap();
        assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
    }
    // Several requests multiplexed on one HTTP/2 connection.
    let h2 = client(false);
    let answers = futures_util::future::join_all((0..8).map(|_| h2.get(&url).send())).await;
    for answer in answers {
        assert_eq!(answer.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn plain_http_serves_http2_with_prior_knowledge_too() {
    let h = start(Limits::default(), WebSecurityArgs::default()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{}/metrics", h.exporter.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_by_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        max_connections: 64,
    };
    let h = start(limits, WebSecurityArgs::default()).await;
    let mut stream = TcpStream::connect(h.exporter.address).await.unwrap();
    let started = Instant::now();
    // One byte every 50 ms: always some traffic, never a whole head.
    let mut cut = false;
    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "
        .iter()
        .cycle()
        .take(200)
    {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        if closes_within(&mut stream, Duration::from_millis(50)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "still open after {:?}", started.elapsed());
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(300), "{after:?}");
    assert!(after < Duration::from_secs(5), "{after:?}");
    assert_eq!(closed(&h, "header_timeout"), 1);
    // A scrape is not cut, and the connection stays open for the next one.
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", h.exporter.address);
    for _ in 0..2 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(closed(&h, "header_timeout"), 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_millis(400),
        max_connections: 64,
    };
    let h = start(limits, WebSecurityArgs::default()).await;
    let mut stream = TcpStream::connect(h.exporter.address).await.unwrap();
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let since = Instant::now();
    assert!(closes_within(&mut stream, Duration::from_secs(5)).await);
    let after = since.elapsed();
    assert!(after >= Duration::from_millis(350), "{after:?}");
    assert_eq!(closed(&h, "idle_timeout"), 1);
    // A connection that never sends a byte goes the same way.
    let mut silent = TcpStream::connect(h.exporter.address).await.unwrap();
    assert!(closes_within(&mut silent, Duration::from_secs(5)).await);
    assert_eq!(closed(&h, "idle_timeout"), 2);
}

#[tokio::test]
async fn past_the_cap_idle_connections_make_room_and_scrapes_still_answer() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 16,
    };
    let h = start(limits, WebSecurityArgs::default()).await;
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(h.exporter.address).await.unwrap());
    }
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", h.exporter.address);
    for _ in 0..3 {
        let response = tokio::time::timeout(common::PATIENCE, client.get(&url).send())
            .await
            .expect("a scrape answers past the cap")
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        let parsed = common::exposition::parse(&body).unwrap();
        assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));
        let open = parsed
            .value("cf_firehose_exporter_http_connections", &[])
            .unwrap();
        assert!(open <= 16.0, "{open}");
    }
    // 40 idle + the scrape's connection, 16 at a time: at least 25 made room.
    let evicted = closed(&h, "evicted");
    assert!(evicted >= 25, "{evicted}");
    assert_eq!(closed(&h, "refused"), 0);
}

#[tokio::test]
async fn past_the_cap_with_every_connection_busy_new_ones_are_refused_and_counted() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        max_connections: 2,
    };
    // Two scrapers held inside basic auth: bcrypt at a high cost keeps
    // their requests in flight.
    let dir =
        std::env::temp_dir().join(format!("cf-firehose-exporter-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web.yml");
    let hash = bcrypt::hash("pw", 11).unwrap();
    std::fs::write(&file, format!("basic_auth_users:\n  u: {hash}\n")).unwrap();
    let h = start(
        limits,
        WebSecurityArgs {
            config_file: Some(file),
            ..Default::default()
        },
    )
    .await;
    let url = format!("http://{}/metrics", h.exporter.address);
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .basic_auth("u", Some(format!("wrong{i}")))
                    .send()
                    .await
            })
        })
        .collect();
    common::eventually("two requests in flight", || async {
        (h.exporter.telemetry.http_connections.get() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(h.exporter.address).await.unwrap();
    assert!(closes_within(&mut third, common::PATIENCE).await);
    assert_eq!(closed(&h, "refused"), 1);
    for b in busy {
        b.abort();
    }
}
