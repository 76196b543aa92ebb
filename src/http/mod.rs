//! The HTTP side: the listener and its connections ([`listener`]), the
//! routes and their handlers ([`router`]), the scrape bodies they share
//! ([`scrape_cache`]), and how the endpoint is secured ([`web_config`],
//! [`basic_auth`]).

pub(crate) mod basic_auth;
pub mod listener;
pub(crate) mod router;
pub(crate) mod scrape_cache;
pub mod web_config;
