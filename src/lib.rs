//! cf-firehose-exporter: reads the Cloud Foundry Loggregator Firehose and
//! serves every metric it carries to Prometheus under its own name.
// Denied everywhere but in three blocks of `envelope` and a prefetch hint in
// `store`, each of which says why it is sound.
#![deny(unsafe_code)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod app;
pub mod cli;
pub mod config;
pub mod envelope;
pub mod exposition;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod naming;
pub mod pinned;
pub mod secret;
pub mod sim;
pub mod source;
pub mod store;
pub mod telemetry;
