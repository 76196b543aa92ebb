//! The last scrape body of each format, shared by the scrapes that overlap
//! its encoding, and its gzipped form, compressed once for all of them.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::exposition::Format;

/// One body, when its encoding finished, and its gzipped form once a
/// scraper has asked for it.
#[derive(Debug)]
struct Encoded {
    finished: Instant,
    body: Bytes,
    gzipped: tokio::sync::OnceCell<Bytes>,
}

/// Why a scrape has no body: the task encoding or compressing it panicked
/// or was cancelled.
#[derive(Debug, thiserror::Error)]
#[error("the encoding task failed: {0}")]
pub struct EncodeError(#[from] tokio::task::JoinError);

/// A scrape body as shared by the scrapes that overlap.
#[derive(Debug, Clone)]
pub struct SharedBody(Arc<Encoded>);

impl SharedBody {
    /// The body as encoded.
    pub fn plain(&self) -> Bytes {
        self.0.body.clone()
    }

    /// The body gzipped, compressed once however many scrapers ask.
    pub async fn gzipped(&self) -> Result<Bytes, EncodeError> {
        self.0
            .gzipped
            .get_or_try_init(|| {
                let body = self.0.body.clone();
                async move { Ok(tokio::task::spawn_blocking(move || gzip(&body)).await?) }
            })
            .await
            .cloned()
    }
}

fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Whether an `Accept-Encoding` header accepts gzip (`gzip` or `*`, with a
/// weight above zero).
pub(crate) fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    value.split(',').any(|entry| {
        let mut parts = entry.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
    })
}

/// Scrapes that arrive while one is being encoded wait for it and share its
/// body (and its gzipped form) instead of encoding the store again; a scrape
/// that finds no encoding under way starts one, so no body is older than
/// the scrape that gets it.
#[derive(Debug, Default)]
pub struct ScrapeCache {
    text: Mutex<Option<SharedBody>>,
    openmetrics: Mutex<Option<SharedBody>>,
}

impl ScrapeCache {
    /// A body in `format` at least as fresh as `arrived`, encoded by `encode` if needed.
    pub(crate) async fn body<F>(
        &self,
        format: Format,
        arrived: Instant,
        encode: F,
    ) -> Result<SharedBody, EncodeError>
    where
        F: std::future::Future<Output = Result<Bytes, EncodeError>>,
    {
        let mut slot = match format {
            Format::PrometheusText => self.text.lock().await,
            Format::OpenMetrics => self.openmetrics.lock().await,
        };
        if let Some(shared) = slot.as_ref().filter(|e| e.0.finished >= arrived) {
            return Ok(shared.clone());
        }
        let body = encode.await?;
        let shared = SharedBody(Arc::new(Encoded {
            finished: Instant::now(),
            body,
            gzipped: tokio::sync::OnceCell::new(),
        }));
        *slot = Some(shared.clone());
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scrapes_arriving_during_an_encoding_share_it_and_later_ones_do_not() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let cache = Arc::new(ScrapeCache::default());
        let encodings = Arc::new(AtomicU64::new(0));
        let (release, gate) = tokio::sync::oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some(gate)));
        let encode = |encodings: Arc<AtomicU64>, gate: Arc<Mutex<Option<_>>>| async move {
            let n = encodings.fetch_add(1, Ordering::SeqCst) + 1;
            let waiting: Option<tokio::sync::oneshot::Receiver<()>> = gate.lock().await.take();
            if let Some(waiting) = waiting {
                let _ = waiting.await;
            }
            Ok(Bytes::from(format!("body {n}")))
        };
        let first = {
            let (cache, e, g) = (cache.clone(), encodings.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .body(Format::PrometheusText, Instant::now(), encode(e, g))
                    .await
            })
        };
        while encodings.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Nine more arrive while the first is being encoded.
        let waiting: Vec<_> = (0..9)
            .map(|_| {
                let (cache, e, g) = (cache.clone(), encodings.clone(), gate.clone());
                let arrived = Instant::now();
                tokio::spawn(async move {
                    cache
                        .body(Format::PrometheusText, arrived, encode(e, g))
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().plain(), "body 1");
        for w in waiting {
            assert_eq!(w.await.unwrap().unwrap().plain(), "body 1");
        }
        assert_eq!(encodings.load(Ordering::SeqCst), 1);
        // One arriving afterwards gets a new body; another format is separate.
        let later = cache
            .body(
                Format::PrometheusText,
                Instant::now(),
                encode(encodings.clone(), gate.clone()),
            )
            .await;
        assert_eq!(later.unwrap().plain(), "body 2");
        let other = cache
            .body(
                Format::OpenMetrics,
                Instant::now(),
                encode(encodings.clone(), gate),
            )
            .await;
        assert_eq!(other.unwrap().plain(), "body 3");
    }

    #[tokio::test]
    async fn a_shared_body_is_gzipped_once_however_many_scrapers_ask() {
        let shared = SharedBody(Arc::new(Encoded {
            finished: Instant::now(),
            body: Bytes::from("cpu 1.5\n".repeat(1000)),
            gzipped: tokio::sync::OnceCell::new(),
        }));
        let asks: Vec<_> = (0..16)
            .map(|_| {
                let shared = shared.clone();
                tokio::spawn(async move { shared.gzipped().await.unwrap() })
            })
            .collect();
        let mut bodies = Vec::new();
        for ask in asks {
            bodies.push(ask.await.unwrap());
        }
        // One compression: every answer is the same buffer.
        assert!(bodies.iter().all(|b| b.as_ptr() == bodies[0].as_ptr()));
        let mut unzipped = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(&bodies[0][..]),
            &mut unzipped,
        )
        .unwrap();
        assert_eq!(unzipped, "cpu 1.5\n".repeat(1000));
    }

    #[test]
    fn gzip_is_accepted_by_name_or_star_unless_weighted_zero() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br, identity")));
        assert!(!accepts_gzip(None));
    }
}
