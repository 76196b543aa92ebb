//! A simulated Cloud Foundry foundation: a UAA token endpoint, a Traffic
//! Controller websocket and a workload modelled on a real foundation. `demo`
//! runs the exporter against it, tests and benchmarks use it, and `simulate`
//! serves it to any Firehose consumer.

pub mod args;
mod catalog;
pub mod demo;
pub mod faults;
pub mod gateway;
pub(crate) mod pacer;
pub mod pki;
pub mod rlp;
pub mod traffic_controller;
pub mod uaa;
pub mod v2;
pub mod workload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::secret::Secret;

/// Polls `done` every 10 ms until it holds, for at most `timeout`; says
/// whether it held.
pub(crate) async fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

/// Tokens issued by the simulated UAA, checked by the simulated Traffic Controller.
#[derive(Debug, Default)]
pub struct TokenBook {
    tokens: Mutex<HashMap<String, Instant>>,
    issued: AtomicU64,
}

impl TokenBook {
    /// Issues a new token valid for `lifetime`.
    pub fn issue(&self, lifetime: Duration) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("sim-token-{n}-{:016x}", rand::random::<u64>());
        self.lock().insert(token.clone(), Instant::now() + lifetime);
        token
    }

    /// True when `token` was issued and has not expired or been revoked.
    pub fn is_valid(&self, token: &str) -> bool {
        self.lock()
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The client the simulated UAA accepts.
#[derive(Debug, Clone)]
pub struct SimClient {
    /// Client id.
    pub id: String,
    /// Client secret.
    pub secret: Secret,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
}

impl Default for SimClient {
    fn default() -> Self {
        Self {
            id: "firehose-exporter".into(),
            secret: Secret::new("sim-secret"),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A running simulated foundation: UAA and Traffic Controller.
#[derive(Debug)]
pub struct Foundation {
    /// The token endpoint.
    pub uaa: uaa::SimUaa,
    /// The Firehose.
    pub traffic_controller: traffic_controller::TrafficController,
    /// The RLP Gateway, on a port of its own on the Traffic Controller's address.
    pub gateway: gateway::Gateway,
    /// The RLP, with mutual TLS.
    pub rlp: rlp::Rlp,
    /// The RLP's certificates and the client's.
    pub pki: pki::SimPki,
    /// The client UAA accepts.
    pub client: SimClient,
}

/// Where the simulated foundation's servers listen (port 0 for any).
#[derive(Debug, Clone, Copy)]
pub struct SimAddresses {
    /// UAA.
    pub uaa: SocketAddr,
    /// The Traffic Controller.
    pub traffic_controller: SocketAddr,
    /// The RLP Gateway.
    pub gateway: SocketAddr,
    /// The RLP.
    pub rlp: SocketAddr,
}

impl Foundation {
    /// Starts both servers on the given addresses (port 0 for any).
    pub async fn start(
        uaa_address: SocketAddr,
        tc_address: SocketAddr,
        client: SimClient,
        tc_settings: traffic_controller::TcSettings,
    ) -> std::io::Result<Self> {
        let other = SocketAddr::new(tc_address.ip(), 0);
        let addresses = SimAddresses {
            uaa: uaa_address,
            traffic_controller: tc_address,
            gateway: other,
            rlp: other,
        };
        Self::start_on(addresses, client, tc_settings).await
    }

    /// As [`Foundation::start`], every server on its given address.
    pub async fn start_on(
        addresses: SimAddresses,
        client: SimClient,
        tc_settings: traffic_controller::TcSettings,
    ) -> std::io::Result<Self> {
        let book = std::sync::Arc::new(TokenBook::default());
        let uaa = uaa::SimUaa::start(addresses.uaa, client.clone(), book.clone()).await?;
        let traffic_controller = traffic_controller::TrafficController::start(
            addresses.traffic_controller,
            tc_settings,
            book.clone(),
        )
        .await?;
        let gateway = gateway::Gateway::start(addresses.gateway, book).await?;
        let pki =
            pki::SimPki::generate("simulated Loggregator CA").map_err(std::io::Error::other)?;
        let rlp = rlp::Rlp::start(addresses.rlp, &pki).await?;
        Ok(Self {
            uaa,
            traffic_controller,
            gateway,
            rlp,
            pki,
            client,
        })
    }

    /// Starts both servers on loopback ports chosen by the system.
    pub async fn start_local() -> std::io::Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start(any, any, SimClient::default(), Default::default()).await
    }

    /// UAA's base URL.
    pub fn uaa_url(&self) -> String {
        format!("http://{}", self.uaa.address)
    }

    /// The RLP Gateway's base URL.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway.address)
    }

    /// The RLP's address, `host:port`.
    pub fn rlp_address(&self) -> String {
        self.rlp.address.to_string()
    }

    /// Writes the RLP client's certificate, key and CA into a new folder
    /// of the system's temporary folder, for an exporter to read.
    pub fn rlp_client_files(&self) -> std::io::Result<crate::source::tls::MutualTlsFiles> {
        static FOLDERS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cf-firehose-exporter-sim-{}-{}",
            std::process::id(),
            FOLDERS.fetch_add(1, Ordering::Relaxed)
        ));
        self.pki.write_client_files(&dir)
    }

    /// The Traffic Controller's base URL.
    pub fn doppler_url(&self) -> String {
        format!("ws://{}", self.traffic_controller.address)
    }
}
