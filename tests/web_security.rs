//! TLS and basic authentication of the endpoint over real HTTPS, with
//! certificates generated for the test: by the Go exporter's flags and by an
//! exporter-toolkit web configuration file with a bcrypt hash and client
//! certificates.

mod common;

use cf_firehose_exporter::http::web_config::WebSecurityArgs;
use cf_firehose_exporter::secret::Secret;
use common::Harness;
use common::pki::Pki;

async fn start(web: WebSecurityArgs) -> Harness {
    let web = web.resolve().expect("valid web settings");
    Harness::start_with(Default::default(), Default::default(), |mut c| {
        c.web = web;
        c
    })
    .await
}

fn client(pki: &Pki, identity: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap());
    if identity {
        builder =
            builder.identity(reqwest::Identity::from_pem(pki.client_identity.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn status(
    client: &reqwest::Client,
    h: &Harness,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> reqwest::Result<reqwest::Response> {
    let url = format!("https://127.0.0.1:{}{path}", h.exporter.address.port());
    let mut request = client.get(url);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await
}

async fn assert_guarded(client: &reqwest::Client, h: &Harness, user: &str, password: &str) {
    let ok = status(client, h, "/metrics", Some((user, password)))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    let parsed = common::exposition::parse(&body).unwrap();
    assert_eq!(parsed.value("cf_firehose_exporter_up", &[]), Some(1.0));

    for path in ["/metrics", "/", "/-/ready"] {
        for credentials in [None, Some((user, "wrong")), Some(("mallory", password))] {
            let refused = status(client, h, path, credentials).await.unwrap();
            assert_eq!(refused.status(), 401, "{path} {credentials:?}");
            let challenge = refused.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic"), "{challenge}");
        }
    }
    for path in ["/", "/-/ready"] {
        let allowed = status(client, h, path, Some((user, password)))
            .await
            .unwrap();
        assert_eq!(allowed.status(), 200, "{path}");
    }
    // Liveness stays open for the supervisor.
    assert_eq!(
        status(client, h, "/-/healthy", None)
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn https_and_basic_auth_by_the_go_exporter_flags() {
    let pki = Pki::new("web-flags");
    let h = start(WebSecurityArgs {
        tls_cert_file: Some(pki.path("server.pem")),
        tls_key_file: Some(pki.path("server.key")),
        auth_username: Some("prometheus".into()),
        auth_password: Some(Secret::new("s3cr3t pass")),
        ..Default::default()
    })
    .await;
    assert_guarded(&client(&pki, false), &h, "prometheus", "s3cr3t pass").await;
    // Plain HTTP to the TLS port gets nothing.
    let plain = reqwest::get(format!("http://{}/metrics", h.exporter.address)).await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

#[tokio::test]
async fn https_basic_auth_and_client_certificates_by_web_config_file() {
    let pki = Pki::new("web-file");
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    // Paths in the file are relative to the file, not to the working directory.
    let file = pki.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             basic_auth_users:\n  grafana: {hash}\n"
        ),
    );
    let h = start(WebSecurityArgs {
        config_file: Some(file),
        ..Default::default()
    })
    .await;
    assert_guarded(&client(&pki, true), &h, "grafana", "correct horse").await;
    // Without a client certificate the handshake fails.
    let refused = status(
        &client(&pki, false),
        &h,
        "/metrics",
        Some(("grafana", "correct horse")),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
}
