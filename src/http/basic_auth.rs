//! HTTP basic authentication of scrapers: bcrypt hashes from the web
//! configuration file, or one plain password from `--web.auth.*`. Answers
//! 401 with `WWW-Authenticate: Basic` to anyone else.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::secret::Secret;

/// Successful checks remembered, so that bcrypt runs once per password, not
/// once per scrape; failed ones too, so that a repeated wrong password costs
/// nothing.
const VERIFIED_MAX: usize = 1024;

/// bcrypt checks that may wait for their turn; beyond, requests are
/// answered 429 at once. A bcrypt check takes a core for tens of
/// milliseconds: unbounded, wrong passwords would starve ingestion.
const BCRYPT_QUEUE: usize = 8;

/// How a user's password is kept.
#[derive(Clone)]
pub enum Credential {
    /// A bcrypt hash, as in the exporter-toolkit's `basic_auth_users`.
    Bcrypt(String),
    /// The password itself, from `--web.auth.password`.
    Plain(Secret),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bcrypt(_) => f.write_str("Bcrypt(***)"),
            Credential::Plain(_) => f.write_str("Plain(***)"),
        }
    }
}

/// The users allowed in.
#[derive(Debug)]
pub struct BasicAuth {
    users: HashMap<String, Credential>,
    /// Checked for unknown users, so that they take as long as known ones: a
    /// hash of the known users' cost, or a password nobody has.
    dummy: Credential,
    /// SHA-256 of `user:password` pairs already verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// SHA-256 of `user:password` pairs already refused.
    refused: Mutex<HashSet<[u8; 32]>>,
    /// bcrypt checks running at once: one core's worth at most.
    bcrypt: tokio::sync::Semaphore,
    /// Places for bcrypt checks running or waiting: none free means busy.
    bcrypt_places: tokio::sync::Semaphore,
}

/// What a check of credentials decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let in.
    Allowed,
    /// Refused: 401.
    Refused,
    /// Too many checks under way to check these now: 429.
    Busy,
}

impl BasicAuth {
    /// Allows `users` in.
    pub fn new(users: impl IntoIterator<Item = (String, Credential)>) -> Self {
        let users: HashMap<String, Credential> = users.into_iter().collect();
        let cost = users.values().find_map(|c| match c {
            Credential::Bcrypt(hash) => hash.get(4..6)?.parse::<u32>().ok(),
            Credential::Plain(_) => None,
        });
        let unguessable = format!("{:032x}", rand::random::<u128>());
        let dummy = cost
            .and_then(|cost| bcrypt::hash(&unguessable, cost).ok())
            .map_or(
                Credential::Plain(Secret::new(unguessable)),
                Credential::Bcrypt,
            );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = (cores / 2).max(1);
        Self {
            users,
            dummy,
            verified: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
            bcrypt: tokio::sync::Semaphore::new(running),
            bcrypt_places: tokio::sync::Semaphore::new(running + BCRYPT_QUEUE),
        }
    }

    /// Whether an `Authorization` header lets its sender in.
    pub async fn allows(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        self.check(authorization).await == Decision::Allowed
    }

    /// Checks an `Authorization` header: allowed, refused, or too busy to tell.
    pub async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> Decision {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Decision::Refused;
        };
        let key = digest(&format!("{user}:{password}"));
        let lock = |set: &Mutex<HashSet<[u8; 32]>>| {
            set.lock().unwrap_or_else(|e| e.into_inner()).contains(&key)
        };
        if lock(&self.verified) {
            return Decision::Allowed;
        }
        if lock(&self.refused) {
            return Decision::Refused;
        }
        let (known, credential) = match self.users.get(&user) {
            Some(credential) => (true, credential.clone()),
            None => (false, self.dummy.clone()),
        };
        let matches = match credential {
            Credential::Plain(expected) => {
                constant_time_eq(&digest(&password), &digest(expected.expose()))
            }
            Credential::Bcrypt(hash) => {
                let Ok(_place) = self.bcrypt_places.try_acquire() else {
                    return Decision::Busy;
                };
                let Ok(_turn) = self.bcrypt.acquire().await else {
                    return Decision::Busy;
                };
                bcrypt_verify(password, hash).await
            }
        };
        let allowed = known && matches;
        let set = if allowed {
            &self.verified
        } else {
            &self.refused
        };
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= VERIFIED_MAX {
            set.clear();
        }
        set.insert(key);
        if allowed {
            Decision::Allowed
        } else {
            Decision::Refused
        }
    }
}

/// Middleware: passes requests from allowed users on, answers 401 to others.
pub async fn require(State(auth): State<Arc<BasicAuth>>, request: Request, next: Next) -> Response {
    match auth
        .check(request.headers().get(header::AUTHORIZATION))
        .await
    {
        Decision::Allowed => return next.run(request).await,
        Decision::Busy => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "Too many password checks under way\n",
            )
                .into_response();
        }
        Decision::Refused => {}
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"cf-firehose-exporter\"",
        )],
        "Unauthorized\n",
    )
        .into_response()
}

async fn bcrypt_verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn digest(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref());
    out
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test]
    async fn plain_and_bcrypt_users_are_checked() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new([
            ("alice".to_string(), Credential::Bcrypt(hash)),
            ("bob".to_string(), Credential::Plain(Secret::new("hunter2"))),
        ]));
        assert!(auth.allows(Some(&header("alice", "s3cret"))).await);
        assert!(
            auth.allows(Some(&header("alice", "s3cret"))).await,
            "cached"
        );
        assert!(!auth.allows(Some(&header("alice", "s3cre"))).await);
        assert!(auth.allows(Some(&header("bob", "hunter2"))).await);
        assert!(!auth.allows(Some(&header("bob", "hunter3"))).await);
        assert!(!auth.allows(Some(&header("eve", "hunter2"))).await);
        assert!(!auth.allows(None).await);
        assert!(
            !auth
                .allows(Some(&HeaderValue::from_static("Bearer abc")))
                .await
        );
        assert!(
            !auth
                .allows(Some(&HeaderValue::from_static("Basic !!!")))
                .await
        );
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_beyond_the_queue_are_answered_busy_and_repeats_cost_nothing() {
        let hash = bcrypt::hash("s3cret", 8).unwrap();
        let auth = Arc::new(BasicAuth::new([(
            "alice".to_string(),
            Credential::Bcrypt(hash),
        )]));
        let checks: Vec<_> = (0..40)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(
                    async move { auth.check(Some(&header("alice", &format!("w{i}")))).await },
                )
            })
            .collect();
        let mut busy = 0;
        for check in checks {
            match check.await.unwrap() {
                Decision::Busy => busy += 1,
                Decision::Refused => {}
                Decision::Allowed => panic!("a wrong password let in"),
            }
        }
        let places = auth.bcrypt.available_permits() + BCRYPT_QUEUE;
        assert!(busy >= 40 - places, "{busy} of 40 busy");
        assert!(busy < 40, "some were checked");
        // The right password still gets in once the storm is over.
        assert_eq!(
            auth.check(Some(&header("alice", "s3cret"))).await,
            Decision::Allowed
        );
        // A wrong password already refused is refused without bcrypt, even
        // with every check slot taken.
        let _taken = auth.bcrypt.acquire().await.unwrap();
        let refused_before = (0..40)
            .map(|i| format!("w{i}"))
            .find(|p| {
                auth.refused
                    .lock()
                    .unwrap()
                    .contains(&digest(&format!("alice:{p}")))
            })
            .expect("a refusal remembered");
        let decided = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            auth.check(Some(&header("alice", &refused_before))),
        )
        .await
        .expect("no wait for bcrypt");
        assert_eq!(decided, Decision::Refused);
    }

    #[test]
    fn unknown_users_are_checked_against_a_hash_of_the_same_cost() {
        let hash = bcrypt::hash("s3cret", 5).unwrap();
        let auth = BasicAuth::new([("alice".to_string(), Credential::Bcrypt(hash))]);
        match &auth.dummy {
            Credential::Bcrypt(dummy) => assert!(dummy.starts_with("$2b$05$"), "{dummy}"),
            Credential::Plain(_) => panic!("a bcrypt dummy for bcrypt users"),
        }
    }
}
