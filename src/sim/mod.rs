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
    /// The client UAA accepts.
    pub client: SimClient,
}

impl Foundation {
    /// Starts both servers on the given addresses (port 0 for any).
    pub async fn start(
        uaa_address: SocketAddr,
        tc_address: SocketAddr,
        client: SimClient,
        tc_settings: traffic_controller::TcSettings,
    ) -> std::io::Result<Self> {
        let gateway_address = SocketAddr::new(tc_address.ip(), 0);
        Self::start_with_gateway(
            uaa_address,
            tc_address,
            gateway_address,
            client,
            tc_settings,
        )
        .await
    }

    /// As [`Foundation::start`], with the gateway on `gateway_address`.
    pub async fn start_with_gateway(
        uaa_address: SocketAddr,
        tc_address: SocketAddr,
        gateway_address: SocketAddr,
        client: SimClient,
        tc_settings: traffic_controller::TcSettings,
    ) -> std::io::Result<Self> {
        let book = std::sync::Arc::new(TokenBook::default());
        let uaa = uaa::SimUaa::start(uaa_address, client.clone(), book.clone()).await?;
        let traffic_controller =
            traffic_controller::TrafficController::start(tc_address, tc_settings, book.clone())
                .await?;
        let gateway = gateway::Gateway::start(gateway_address, book).await?;
        Ok(Self {
            uaa,
            traffic_controller,
            gateway,
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

    /// The Traffic Controller's base URL.
    pub fn doppler_url(&self) -> String {
        format!("ws://{}", self.traffic_controller.address)
    }
}
